"""Test-set evaluation: the confusion matrix every metric here derives
from, per epoch and on demand.

`archc evaluate` builds the model, loads a checkpoint and reports accuracy, per-class accuracy and
the confusion matrix of the test split.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from archc.trainer.feed import Feed
    from archc.trainer.model import SpecOrModule

TOP5_MIN_CLASSES = 10


@dataclass
class EvalResult:
    """Confusion counts (rows: true class, columns: predicted) and the summed cross-entropy."""

    confusion: torch.Tensor
    loss_sum: float
    top5_correct: int = 0

    @property
    def top5(self) -> float | None:
        """Top-5 accuracy, reported only where there are more than 10 classes (else None)."""
        return (
            self.top5_correct / max(1, self.count)
            if self.confusion.shape[0] > TOP5_MIN_CLASSES
            else None
        )

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(self.confusion.diag().sum()) / max(1, self.count)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.count)

    def per_class(self) -> list[float | None]:
        """Recall of each class; None for a class absent from the split."""
        totals = self.confusion.sum(dim=1)
        return [
            float(c) / float(t) if t else None
            for c, t in zip(self.confusion.diag(), totals, strict=True)
        ]


def eval_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    autocast: torch.dtype | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(confusion matrix, summed loss, top-5 hits) over normalised (x,
    y) batches, as device tensors."""
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    k = min(5, num_classes)
    was_training = model.training
    model.eval()
    amp = (
        torch.autocast(device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    try:
        with torch.no_grad(), amp:
            for x, y in batches:
                out = model(x)
                logits = (out[0] if isinstance(out, (tuple, list)) else out).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                confusion += torch.bincount(
                    y * num_classes + logits.argmax(1), minlength=num_classes * num_classes
                )
                top5 += (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum()
    finally:
        model.train(was_training)
    return confusion.view(num_classes, num_classes), loss_sum, top5


def evaluate(
    spec_or_module: SpecOrModule | None,
    checkpoint: str | None = None,
    *,
    pretrained: bool = False,
    spec_overrides: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | list[int] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """Accuracy (top-5 above 10 classes), per-class accuracy and confusion matrix on the test split,
    of a checkpoint or, with pretrained=True, of torchvision's published weights for a zoo spec.

    A checkpoint's model is rebuilt as it was trained (the checkpoint's recorded --set and
    --input; spec_or_module None: also its recorded spec). Dataset settings default to those the
    checkpoint was trained with, then the spec's, then flags. Published weights are scored as
    torchvision scores them (`weights.transforms()`, ImageFolder's class order) on an
    ImageNet-layout val folder, e.g.
    evaluate("resnet50", pretrained=True, dataset="imagefolder:/data/imagenet/val").
    """
    from archc.trainer.errors import TrainError

    if pretrained == (checkpoint is not None):
        raise TrainError(
            "give a checkpoint (--checkpoint FILE) or --pretrained (torchvision's "
            "published weights), one of them"
        )
    if pretrained:
        return _evaluate_pretrained(spec_or_module, spec_overrides, plugins, input_shape, config)
    assert checkpoint is not None
    return _evaluate_checkpoint(
        spec_or_module, checkpoint, spec_overrides, plugins, input_shape, config
    )


def _evaluate_checkpoint(
    spec_or_module: SpecOrModule | None,
    checkpoint: str,
    spec_overrides: dict[str, Any] | None,
    plugins: tuple[str, ...],
    input_shape: tuple[int, ...] | list[int] | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    from archc.trainer.api import resolve_config
    from archc.trainer.checkpoint import FORMAT, extract_state_dict, load_weights, read_torch_file
    from archc.trainer.distributed import DistInfo
    from archc.trainer.errors import CheckpointError
    from archc.trainer.feed import open_feed
    from archc.trainer.model import check_fit, checkpoint_source, resolve_source
    from archc.trainer.runtime import resolve_device

    stored = read_torch_file(Path(checkpoint))
    extract_state_dict(stored, Path(checkpoint))  # fail on a weightless file before loading data
    if isinstance(spec_or_module, nn.Module):
        source = resolve_source(spec_or_module, spec_overrides, plugins, input_shape)
    else:
        source = checkpoint_source(
            spec_or_module, stored, checkpoint, spec_overrides, plugins, input_shape
        )
    trained_with: dict[str, Any] = {}
    normalization = None
    if (
        isinstance(stored, dict)
        and stored.get("format") == FORMAT
        and isinstance(stored.get("config"), dict)
    ):
        keep = (
            "dataset",
            "resize",
            "synthetic_size",
            "synthetic_shape",
            "synthetic_classes",
            "test_subset",
            "data_dir",
            "recipe",
        )
        trained_with = {k: v for k, v in stored["config"].items() if k in keep}
        normalization = stored.get("normalization")
    cfg = resolve_config(source, {**trained_with, **config})
    device = resolve_device(cfg.device)
    constants = None
    if normalization is not None:  # the constants the model was trained with
        try:
            constants = (
                torch.tensor(normalization["mean"], dtype=torch.float32),
                torch.tensor(normalization["std"], dtype=torch.float32),
            )
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise CheckpointError(
                f"{checkpoint} is damaged: no usable normalization constants"
            ) from None
    # Weights not trained by archc on this folder (a state_dict, torchvision's) are scored on all of
    # a folder without train/ and val/ subfolders, e.g. ImageNet's val folder.
    feed = open_feed(
        cfg,
        source.input_shape,
        DistInfo(),
        device,
        constants,
        whole_test=not trained_with,
        augment_train=False,
    )
    try:
        if constants is not None and (
            constants[0].shape != (feed.channels,) or constants[1].shape != (feed.channels,)
        ):
            raise CheckpointError(
                f"{checkpoint} is damaged: it normalises {constants[0].numel()} "
                f"channels, {feed.name} has {feed.channels}"
            )
        torch.manual_seed(cfg.seed)
        model = source.build()
        load_weights(model, checkpoint)
        model.to(device)
        check_fit(source, model, feed.sample(), feed.name, feed.num_classes)
        batch = cfg.eval_batch_size or 2 * cfg.batch_size
        return _report(source.name, str(checkpoint), model, feed, batch, device)
    finally:
        feed.close()


def _evaluate_pretrained(
    spec: SpecOrModule | None,
    spec_overrides: dict[str, Any] | None,
    plugins: tuple[str, ...],
    input_shape: tuple[int, ...] | list[int] | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    """torchvision's published weights for a zoo spec, scored with their own preprocessing."""
    from archc.pretrained import load_pretrained, preprocessing, published
    from archc.trainer.api import resolve_config
    from archc.trainer.distributed import DistInfo
    from archc.trainer.errors import DataError, TrainError
    from archc.trainer.feed import open_feed
    from archc.trainer.model import check_fit, resolve_source
    from archc.trainer.runtime import resolve_device
    from archc.trainer.stream import EvalPreset

    if not isinstance(spec, (str, Path)):
        raise TrainError("--pretrained needs a zoo spec or name, e.g. resnet50")
    source = resolve_source(spec, spec_overrides, plugins, input_shape)
    entry, weights = published(source.name)
    preset = EvalPreset.of(preprocessing(entry, weights, source.input_shape))
    cfg = resolve_config(source, config)
    device = resolve_device(cfg.device)
    feed = open_feed(
        cfg,
        source.input_shape,
        DistInfo(),
        device,
        None,
        whole_test=True,
        augment_train=False,
        preset=preset,
    )
    try:
        categories = len(weights.meta["categories"])
        if feed.num_classes != categories:
            raise DataError(
                f"{feed.name} has {feed.num_classes} class folders, but torchvision's {weights} "
                f"predicts {categories} ImageNet classes, numbered in the sorted order of the "
                f"{categories} class folders of ImageNet's val split (n01440764 ... n15075141): "
                f"evaluate on that folder"
            )
        torch.manual_seed(cfg.seed)
        model = source.build()
        load_pretrained(model, source.name)
        model.to(device)
        check_fit(source, model, feed.sample(), feed.name, feed.num_classes)
        batch = cfg.eval_batch_size or 2 * cfg.batch_size
        report = _report(source.name, f"torchvision:{weights}", model, feed, batch, device)
    finally:
        feed.close()
    return report | {"preprocessing": preset.describe()}


def _report(
    name: str, weights: str, model: nn.Module, feed: Feed, batch: int, device: torch.device
) -> dict[str, Any]:
    """The evaluation report of `model` on the feed's test split."""
    batches = feed.test_batches(batch)
    confusion, loss_sum, top5 = eval_batches(model, batches, feed.num_classes, None, device)
    result = EvalResult(confusion.cpu(), float(loss_sum), int(top5))
    return {
        "spec": name,
        "checkpoint": weights,
        "dataset": feed.name,
        "test_images": result.count,
        "test_loss": result.loss,
        "test_acc": result.accuracy,
        "test_top5": result.top5,
        "classes": list(feed.classes),
        "per_class_acc": result.per_class(),
        "confusion": result.confusion.tolist(),
    }
