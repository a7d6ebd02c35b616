"""Batches for the loop from either data path: whole uint8 tensors in memory, or files streamed
through DataLoader workers. The loop sees one interface: train batches of an epoch from any step,
sharded test batches, all normalised on the training device.

`--data-path auto` (the default) keeps a dataset in memory when its decoded size fits the memory
budget (`--memory-limit`, else half the available memory) and streams an image folder otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from archc.compiler.train_config import TrainConfig
from archc.trainer.augment import BatchPipeline
from archc.trainer.data import ImageData, load_dataset
from archc.trainer.distributed import DistInfo
from archc.trainer.errors import DataError, TrainError

if TYPE_CHECKING:
    from archc.trainer.stream import EvalPreset

EPOCH_SEED_STRIDE = 1_000_003

PathTaken = Literal["memory", "stream"]


@dataclass
class Feed:
    """What the loop needs of a dataset, whichever path holds it."""

    path: PathTaken
    name: str
    classes: tuple[str, ...]
    train_images: int
    test_images: int
    crop_padding: int
    hflip: bool
    mean: torch.Tensor
    std: torch.Tensor
    pipeline: BatchPipeline
    device: torch.device
    dist: DistInfo
    channels: int
    note: str = ""  # why this path, for the run log
    val_images: int = 0  # the validation split held out of the training images (--val-split)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def steps(self, global_batch: int) -> int:
        """Steps per epoch: the incomplete last batch is dropped, every step has the full batch."""
        if self.train_images < global_batch:
            raise TrainError(
                f"the training set has {self.train_images} images, fewer "
                f"than one batch of {global_batch}; lower --batch-size"
            )
        return self.train_images // global_batch

    def train_batches(
        self, epoch: int, start_step: int, seed: int, global_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def test_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def val_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the validation split (empty without one)."""
        return iter(())

    def sample(self) -> torch.Tensor:
        """Two normalised test images: what the model's fit to the data is checked with."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop loader workers (the in-memory path has none)."""


@dataclass
class EpochPlan:
    """Sample order, crop offsets and flip flags of one in-memory epoch, on the training device."""

    order: torch.Tensor
    offsets: torch.Tensor
    flips: torch.Tensor

    @classmethod
    def draw(
        cls, n: int, seed: int, epoch: int, pipeline: BatchPipeline, device: torch.device
    ) -> EpochPlan:
        gen = torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch)
        order = torch.randperm(n, generator=gen)
        offsets, flips = pipeline.draw(n, gen)
        return cls(order.to(device), offsets.to(device), flips.to(device))


@dataclass
class MemoryFeed(Feed):
    """The dataset as uint8 tensors on the device; each step gathers,
    crops and flips a whole batch."""

    data: ImageData | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    def train_batches(
        self, epoch: int, start_step: int, seed: int, global_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.data is not None
        local = global_batch // self.dist.world
        plan = EpochPlan.draw(self.train_images, seed, epoch, self.pipeline, self.device)
        for step in range(start_step, self.steps(global_batch)):
            lo = step * global_batch + self.dist.rank * local
            sl = slice(lo, lo + local)
            idx = plan.order[sl]
            x = self.pipeline.train_batch(
                self.data.train_x.index_select(0, idx), plan.offsets[sl], plan.flips[sl]
            )
            yield x, self.data.train_y.index_select(0, idx)

    def test_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.data is not None
        x, y = self.data.test_x, self.data.test_y
        if self.dist.active:
            x, y = x[self.dist.rank :: self.dist.world], y[self.dist.rank :: self.dist.world]
        for start in range(0, len(y), batch):
            yield self.pipeline.eval_batch(x[start : start + batch]), y[start : start + batch]

    def val_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.val_x is None or self.val_y is None:
            return
        x, y = self.val_x, self.val_y
        if self.dist.active:
            x, y = x[self.dist.rank :: self.dist.world], y[self.dist.rank :: self.dist.world]
        for start in range(0, len(y), batch):
            yield self.pipeline.eval_batch(x[start : start + batch]), y[start : start + batch]

    def sample(self) -> torch.Tensor:
        assert self.data is not None
        return self.pipeline.eval_batch(self.data.test_x[:2])


def open_feed(
    cfg: TrainConfig,
    input_shape: tuple[int, ...] | None,
    dist: DistInfo,
    device: torch.device,
    normalization: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    stored_path: str | None = None,
    whole_test: bool = False,
    augment_train: bool = True,
    preset: EvalPreset | None = None,
) -> Feed:
    """The feed for cfg's dataset on the path cfg (or, resuming with
    `auto`, the checkpoint) asks for.

    normalization: the checkpoint's constants, else computed (or the recipe's).
    preset: published weights' evaluation preprocessing (`archc evaluate --pretrained`), streamed.
    """
    path, note = _choose_path(cfg, dist, device, stored_path, whole_test, preset)
    if cfg.dataset.startswith("shards:"):
        from archc.trainer.shards import open_shards

        feed: Feed = open_shards(cfg, input_shape, dist, device, normalization,
                                 augment_train=augment_train, preset=preset)  # fmt: skip
    elif path == "stream":
        from archc.trainer.stream import open_stream

        feed = open_stream(cfg, input_shape, dist, device, normalization, whole_test=whole_test,
                           augment_train=augment_train, preset=preset)  # fmt: skip
    else:
        feed = _open_memory(cfg, input_shape, dist, device, normalization, augment_train)
    feed.note = note
    return feed


def _choose_path(
    cfg: TrainConfig,
    dist: DistInfo,
    device: torch.device,
    stored: str | None,
    whole_test: bool,
    preset: EvalPreset | None,
) -> tuple[PathTaken, str]:
    folder = cfg.dataset.startswith("imagefolder:")
    wanted = cfg.data_path if cfg.data_path != "auto" or stored is None else stored
    if cfg.dataset.startswith("shards:"):
        if cfg.data_path == "memory":
            raise DataError(
                "shards are read as a stream (--data-path stream "
                "or auto); for memory, train on the image folder"
            )
        return "stream", f"streaming {cfg.dataset} (tar shards)"
    if preset is not None:
        if not folder:
            raise DataError(
                f"published ImageNet weights are evaluated on an ImageNet-layout folder "
                f"(imagefolder:VAL, VAL/CLASS/*.JPEG) or shards:DIR, not {cfg.dataset}"
            )
        if cfg.data_path == "memory":
            raise DataError(
                "--pretrained evaluation resizes and crops each image in loader workers, "
                "as torchvision does; use --data-path stream or auto"
            )
        described = preset.describe()
        return (
            "stream",
            f"streaming {cfg.dataset}: the weights' evaluation preprocessing ({described})",
        )
    if wanted == "stream" and not folder:
        raise DataError(
            "--data-path stream reads image folders (imagefolder:PATH) "
            f"and shards:PATH; {cfg.dataset} is held in memory"
        )
    if wanted == "memory" and cfg.recipe == "imagenet":
        raise DataError(
            "--recipe imagenet crops each image at random (RandomResizedCrop) "
            "in loader workers; use --data-path stream or auto"
        )
    if cfg.recipe == "imagenet":
        return "stream", "streaming: the imagenet recipe transforms each image in loader workers"
    if wanted in ("memory", "stream"):
        return wanted, ""  # type: ignore[return-value]
    if not folder:
        return "memory", ""
    from archc.trainer.stream import decoded_bytes, list_imagefolder, memory_budget

    listing = list_imagefolder(cfg.dataset.split(":", 1)[1], whole_test)
    _, size = decoded_bytes(listing, cfg.resize)
    budget = memory_budget(cfg, device, dist.local_world)
    if size <= budget:
        return "memory", ""
    return "stream", (
        f"streaming {listing.name}: decoded it takes ~{_gb(size)}, "
        f"over the memory budget of {_gb(budget)} (--memory-limit)"
    )


def _gb(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def augmentation(cfg: TrainConfig, default_padding: int, default_flip: bool) -> tuple[int, bool]:
    """(crop padding, flip) from the flags, else the dataset's defaults; none with --no-augment."""
    augment = cfg.augment if cfg.augment is not None else True
    pad = (cfg.crop_padding if cfg.crop_padding is not None else default_padding) if augment else 0
    flip = (cfg.hflip if cfg.hflip is not None else default_flip) if augment else False
    return pad, flip


def _open_memory(
    cfg: TrainConfig,
    input_shape: tuple[int, ...] | None,
    dist: DistInfo,
    device: torch.device,
    normalization: tuple[torch.Tensor, torch.Tensor] | None,
    augment_train: bool,
) -> MemoryFeed:
    data = load_dataset(cfg, input_shape)
    val_x = val_y = None
    if augment_train and cfg.val_split > 0:  # training, not `archc evaluate`
        from archc.trainer.validation import hold_out

        data, val_x, val_y = hold_out(data, cfg.val_split)
    mean, std = normalization if normalization is not None else data.channel_stats()
    pad, flip = augmentation(cfg, data.crop_padding, data.hflip) if augment_train else (0, False)
    pipeline = BatchPipeline(
        mean,
        std,
        crop_padding=pad,
        hflip=flip,
        resize=cfg.resize,
        channels_last=bool(cfg.channels_last),
        device=device,
    )
    return MemoryFeed(
        path="memory",
        name=data.name,
        classes=data.classes,
        train_images=len(data.train_y),
        test_images=len(data.test_y),
        crop_padding=pad,
        hflip=flip,
        mean=mean,
        std=std,
        pipeline=pipeline,
        device=device,
        dist=dist,
        channels=data.shape[0],
        data=data.to(device),
        val_images=0 if val_y is None else len(val_y),
        val_x=None if val_x is None else val_x.to(device),
        val_y=None if val_y is None else val_y.to(device),
    )
