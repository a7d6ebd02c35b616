"""The validation split: images held out of the training set to choose best.pt and stop early.

The test split is only ever reported, never used to choose anything. The split is stratified and
drawn with a fixed seed independent of the run's --seed, so runs of a sweep that differ only in
their seed are chosen on the same validation images.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from archc.trainer.data import ImageData
from archc.trainer.errors import DataError

SPLIT_SEED = 20_240_601


def split_indices(
    labels: torch.Tensor, num_classes: int, fraction: float, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), both sorted: round(fraction x N) images held out
    (at least one, leaving at least one to train on), each class giving its share, as near to
    `fraction` of its images as whole images allow."""
    labels = labels.cpu()
    n = len(labels)
    total = min(n - 1, max(1, round(fraction * n)))
    if total < 1:
        raise DataError(
            f"{name} has too few training images for a validation split; pass --val-split 0"
        )
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(n, generator=gen)
    shuffled = labels[perm]
    counts = torch.bincount(shuffled, minlength=num_classes)
    # each image's rank within its class (in the shuffled order), as a fraction of the class: taking
    # the smallest takes every class in proportion, ties in the random order
    onehot = torch.nn.functional.one_hot(shuffled, max(num_classes, int(shuffled.max()) + 1))
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    key = (rank.double() + 0.5) / counts[shuffled].double()
    chosen = perm[torch.sort(key, stable=True).indices[:total]]
    keep = torch.ones(n, dtype=torch.bool)
    keep[chosen] = False
    return keep.nonzero().flatten(), chosen.sort().values


def hold_out(data: ImageData, fraction: float) -> tuple[ImageData, torch.Tensor, torch.Tensor]:
    """(data without the held-out images, validation images, validation labels): split_indices."""
    train_idx, val_idx = split_indices(data.train_y, data.num_classes, fraction, data.name)
    device = data.train_x.device
    val_idx, train_idx = val_idx.to(device), train_idx.to(device)
    rest = replace(
        data,
        train_x=data.train_x.index_select(0, train_idx),
        train_y=data.train_y.index_select(0, train_idx),
    )
    return rest, data.train_x.index_select(0, val_idx), data.train_y.index_select(0, val_idx)
