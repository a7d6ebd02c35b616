"""Streaming data: image files decoded in DataLoader worker processes, for datasets beyond memory.

Each worker reads a file, decodes it with PIL and applies a torchvision.transforms.v2 pipeline to
the PIL image (as torchvision's ImageFolder and its reference scripts do, so evaluation matches
torchvision's published figures); batches travel as uint8 (pinned on CUDA) and
are normalised on the training device like the in-memory path's. Every sample's random draws come
from a seed that is a function of (seed, epoch, sample index) alone, and the sampler (torch's
DistributedSampler) can start anywhere in an epoch: so a run resumed mid-epoch, or split over any
number of processes and workers, sees exactly the images an uninterrupted run would.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from archc.compiler.train_config import TrainConfig, default_threads
from archc.trainer.data import IMAGEFOLDER_TEST_FRACTION, SPLIT_SEED, folder_splits, list_folder
from archc.trainer.errors import DataError
from archc.trainer.feed import EPOCH_SEED_STRIDE, Feed

if TYPE_CHECKING:
    from PIL.Image import Image

    from archc.trainer.distributed import DistInfo

    Transform = Callable[[Image], Image]  # a per-sample torchvision transform on PIL images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = (
    224 / 256
)  # Resize 256, CenterCrop 224: torchvision's evaluation of ImageNet models
SAMPLE_SEED_STRIDE = 10_000_019
STATS_SAMPLE = 256  # images that estimate the normalisation constants when no recipe gives them
HEADER_SAMPLE = 64  # images whose headers estimate the decoded size of a folder
MAX_LOADER_WORKERS = 8


class ImageFiles(torch.utils.data.Dataset):
    """(path, label) pairs as numpy arrays (no per-item Python
    objects for forked workers to copy)."""

    def __init__(
        self, samples: Sequence[tuple[str, int]], channels: int, transform: Transform
    ) -> None:
        self.paths = np.array([os.fsencode(p) for p, _ in samples])
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        """key = (index, seed): the seed makes this sample's augmentation reproducible anywhere."""
        index, seed = key
        image = decode(os.fsdecode(self.paths[index]), self.channels)
        return seeded(self.transform, image, seed), int(self.labels[index])


def seeded(transform: Transform, image: Image, seed: int) -> torch.Tensor:
    """transform(image) with torch's generator seeded by `seed` (transforms.v2 draws from it), as a
    uint8 (C, H, W) tensor. In the main process (no loader workers) the run's RNG state is kept."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    generator = (
        torch.default_generator
    )  # torch.manual_seed would also queue a lazy CUDA seed: 100x slower
    saved = generator.get_state() if torch.utils.data.get_worker_info() is None else None
    generator.manual_seed(seed)
    try:
        out = transform(image)
    finally:
        if saved is not None:
            generator.set_state(saved)
    return pil_to_tensor(out)


def decode(path: str, channels: int) -> Image:
    """The image as a PIL image in RGB or L, as torchvision's ImageFolder loader opens it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"imagefolder: cannot read {path}: {exc}") from None


def decode_bytes(data: bytes, channels: int | None, name: str) -> Image:
    """An image file's bytes as a PIL image (in RGB or L, or as stored when channels is None)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB" if channels == 3 else "L") if channels else img.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"shards: cannot decode sample {name}: {exc}") from None


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler (shuffled by (seed, epoch), rank r takes every world-th index),
    yielding (index, sample seed) and able to skip the samples of steps already trained."""

    def __init__(self, n: int, rank: int, world: int, seed: int) -> None:
        super().__init__(
            range(n),  # type: ignore[arg-type]  # stub wants a Dataset; the sampler only takes len()
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * EPOCH_SEED_STRIDE + self.epoch) * SAMPLE_SEED_STRIDE
        for index in list(super().__iter__())[self.skip :]:
            yield index, (base + index) % 2**63

    def __len__(self) -> int:
        return self.num_samples - self.skip


@dataclass(frozen=True)
class FolderListing:
    """An image folder's train/test file lists, before anything is decoded."""

    name: str
    classes: tuple[str, ...]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def list_imagefolder(argument: str, whole_test: bool = False) -> FolderListing:
    """The splits `imagefolder:PATH` means, as the in-memory loader reads them (same 80/20 split).

    whole_test: a folder without train/ and val/ (or test/) is all test images (evaluating weights
    that were not trained on it, e.g. ImageNet's val folder).
    """
    root = Path(argument).expanduser()
    train_dir, test_dir = folder_splits(root)
    if test_dir is not None:
        classes, train = list_folder(train_dir)
        test_classes, test = list_folder(test_dir)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(
                f"imagefolder: {test_dir} has classes not in {train_dir}: {', '.join(unknown)}"
            )
        test = [(p, classes.index(test_classes[y])) for p, y in test]
    else:
        classes, samples = list_folder(root)
        if whole_test:
            return FolderListing(f"imagefolder:{root}", tuple(classes), [], samples)
        if len(samples) < 2:
            raise DataError(
                f"imagefolder: {root} needs at least 2 images to split into train and test"
            )
        order = torch.randperm(
            len(samples), generator=torch.Generator().manual_seed(SPLIT_SEED)
        ).tolist()
        n_test = max(1, round(IMAGEFOLDER_TEST_FRACTION * len(samples)))
        train = [samples[i] for i in order[n_test:]]
        test = [samples[i] for i in order[:n_test]]
    return FolderListing(f"imagefolder:{root}", tuple(classes), train, test)


def header_stats(
    samples: Sequence[tuple[str, int]], count: int = HEADER_SAMPLE
) -> tuple[int, tuple[int, int], float]:
    """(channels, first image's (H, W), mean pixels per image) from the headers of up to `count`
    evenly spaced files: what deciding memory vs streaming needs, without decoding anything."""
    from PIL import Image, UnidentifiedImageError

    picks = samples[:: max(1, len(samples) // count)][:count]
    grey, pixels, first = True, 0, (0, 0)
    for i, (path, _) in enumerate(picks):
        try:
            with Image.open(path) as img:
                grey = grey and img.mode in ("1", "L", "I;16", "I")
                pixels += img.size[0] * img.size[1]
                if i == 0:
                    first = (img.size[1], img.size[0])
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"imagefolder: cannot read {path}: {exc}") from None
    return (1 if grey else 3), first, pixels / max(1, len(picks))


def decoded_bytes(listing: FolderListing, resize: tuple[int, int] | None) -> tuple[int, int]:
    """(channels, estimated bytes of the whole folder decoded to uint8, after --resize)."""
    channels, _, pixels = header_stats(listing.train + listing.test)
    if resize is not None:
        pixels = resize[0] * resize[1]
    return channels, int(channels * pixels * (len(listing.train) + len(listing.test)))


def available_memory() -> int:
    """Bytes this process could still take: MemAvailable, capped by a cgroup (container) limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 * 2**30
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = Path("/sys/fs/cgroup", usage_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 2**60:
            available = min(available, max(0, int(limit) - int(usage)))
    return available


def memory_budget(cfg: TrainConfig, device: torch.device, processes: int) -> int:
    """--memory-limit, else half the available memory shared by this machine's processes (each
    holds its copy); on a GPU also half its free memory, where the in-memory path moves the data."""
    if cfg.memory_limit is not None:
        return int(cfg.memory_limit)  # TrainConfig's validator has turned '512M' into bytes
    budget = available_memory() // (2 * max(1, processes))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, free // 2)
    return budget


def loader_workers(cfg: TrainConfig, processes: int) -> int:
    if cfg.loader_workers is not None:
        return cfg.loader_workers
    return min(MAX_LOADER_WORKERS, default_threads(processes))


def train_transform(
    cfg: TrainConfig, size: tuple[int, int], crop_padding: int, hflip: bool
) -> Transform:
    """The per-sample training transforms on uint8 tensors (torchvision.transforms.v2)."""
    from torchvision.transforms import v2

    steps: list[Transform]
    if cfg.recipe == "imagenet":
        steps = [v2.RandomResizedCrop(size, antialias=True)]
    else:
        steps = [v2.Resize(size, antialias=True)]
        if crop_padding:
            steps.append(v2.RandomCrop(size, padding=crop_padding))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


@dataclass(frozen=True)
class EvalPreset:
    """The evaluation preprocessing published weights were scored with (torchvision's
    `weights.transforms()`: Resize, CenterCrop, normalise), split as the streaming path runs it:
    resize and crop per image in loader workers, normalisation of uint8 batches on the device.
    The arithmetic is torchvision's own, so the model sees exactly the tensors torchvision's
    reference evaluation gives it."""

    resize: int
    crop: int
    interpolation: str  # torchvision InterpolationMode's value: "bilinear", "bicubic", ...
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, transforms: Any) -> EvalPreset:
        """From a torchvision ImageClassification preset (what `weights.transforms()` returns)."""
        return cls(
            resize=int(transforms.resize_size[0]),
            crop=int(transforms.crop_size[0]),
            interpolation=transforms.interpolation.value,
            mean=tuple(float(m) for m in transforms.mean),
            std=tuple(float(s) for s in transforms.std),
        )

    def transform(self) -> Transform:
        from torchvision.transforms import InterpolationMode, v2

        mode = InterpolationMode(self.interpolation)
        return v2.Compose(
            [v2.Resize(self.resize, interpolation=mode, antialias=True), v2.CenterCrop(self.crop)]
        )

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.mean), torch.tensor(self.std)

    def describe(self) -> str:
        return (
            f"Resize {self.resize} ({self.interpolation}), CenterCrop {self.crop}, "
            f"mean {list(self.mean)}, std {list(self.std)}"
        )


def eval_transform(cfg: TrainConfig, size: tuple[int, int]) -> Transform:
    """Evaluation transforms: the imagenet recipe's Resize(size /
    0.875) + CenterCrop, else Resize."""
    from torchvision.transforms import v2

    if cfg.recipe == "imagenet":
        return v2.Compose(
            [v2.Resize(round(min(size) / EVAL_CROP_FRACTION), antialias=True), v2.CenterCrop(size)]
        )
    return v2.Resize(size, antialias=True)


def make_loader(
    files: ImageFiles,
    sampler: Iterable[tuple[int, int]],
    batch: int,
    workers: int,
    device: torch.device,
    drop_last: bool,
) -> DataLoader:
    return DataLoader(
        files,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(
            0
        ),  # the loader's own seed draw leaves the global RNG alone
    )


def estimate_stats(
    files: ImageFiles, count: int = STATS_SAMPLE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std in [0, 1] of up to `count` evenly spaced training images."""
    picks = range(0, len(files), max(1, len(files) // count))
    total = torch.zeros(files.channels, dtype=torch.float64)
    squares = torch.zeros(files.channels, dtype=torch.float64)
    pixels = 0
    for i in list(picks)[:count]:
        image, _ = files[(i, 0)]
        values = image.to(torch.float64).div_(255.0).flatten(1)
        total += values.sum(1)
        squares += values.square().sum(1)
        pixels += values.shape[1]
    mean = total / max(1, pixels)
    std = (squares / max(1, pixels) - mean.square()).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return mean.float(), std.float()


def without_worker_traceback(exc: DataError) -> DataError:
    """A DataError raised in a worker arrives wrapped with its traceback: keep the message."""
    last = [line for line in str(exc).strip().splitlines() if line.strip()][-1:] or [str(exc)]
    return DataError(last[0].split("DataError: ", 1)[-1])


@dataclass
class StreamFeed(Feed):
    """Image files decoded and transformed in worker processes; uint8
    batches normalised on the device."""

    train_files: ImageFiles | None = None
    test_files: ImageFiles | None = None
    val_files: ImageFiles | None = None
    workers: int = 0
    _train_loader: DataLoader | None = None
    _test_loader: DataLoader | None = None
    _val_loader: DataLoader | None = None
    _global_batch: int = 0

    def train_batches(
        self, epoch: int, start_step: int, seed: int, global_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.train_files is not None
        local = global_batch // self.dist.world
        if self._train_loader is None or self._global_batch != global_batch:
            self._train_loader = make_loader(
                self.train_files,
                EpochSampler(len(self.train_files), self.dist.rank, self.dist.world, seed),
                local,
                self.workers,
                self.device,
                drop_last=True,
            )
            self._global_batch = global_batch
        sampler = self._train_loader.sampler
        assert isinstance(sampler, EpochSampler)
        sampler.set_position(epoch, start_step * local)
        steps = self.steps(global_batch)
        batches = iter(self._train_loader)
        for _ in range(start_step, steps):
            x, y = self._next(batches)
            yield (
                self.pipeline.eval_batch(x.to(self.device, non_blocking=True)),
                y.to(self.device, non_blocking=True),
            )

    def test_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.test_files is not None
        if self._test_loader is None or self._test_loader.batch_size != batch:
            shard = [(i, 0) for i in range(self.dist.rank, len(self.test_files), self.dist.world)]
            self._test_loader = make_loader(
                self.test_files, shard, batch, self.workers, self.device, drop_last=False
            )
        return self._eval_batches(self._test_loader)

    def val_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.val_files is None:
            return iter(())
        if self._val_loader is None or self._val_loader.batch_size != batch:
            shard = [(i, 0) for i in range(self.dist.rank, len(self.val_files), self.dist.world)]
            self._val_loader = make_loader(
                self.val_files, shard, batch, self.workers, self.device, drop_last=False
            )
        return self._eval_batches(self._val_loader)

    def _eval_batches(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(loader)
        while True:
            try:
                x, y = self._next(batches)
            except StopIteration:
                return
            yield (
                self.pipeline.eval_batch(x.to(self.device, non_blocking=True)),
                y.to(self.device, non_blocking=True),
            )

    def sample(self) -> torch.Tensor:
        assert self.test_files is not None
        images = torch.stack(
            [self.test_files[(i, 0)][0] for i in range(min(2, len(self.test_files)))]
        )
        return self.pipeline.eval_batch(images.to(self.device))

    def close(self) -> None:
        self._train_loader = self._test_loader = self._val_loader = (
            None  # persistent workers exit with their iterators
        )

    @staticmethod
    def _next(batches: Iterator[Any]) -> Any:
        try:
            return next(batches)
        except DataError as exc:
            raise without_worker_traceback(exc) from None


def open_stream(
    cfg: TrainConfig,
    input_shape: tuple[int, ...] | None,
    dist: DistInfo,
    device: torch.device,
    normalization: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    whole_test: bool = False,
    augment_train: bool = True,
    preset: EvalPreset | None = None,
) -> StreamFeed:
    """The streaming feed of `imagefolder:PATH`: file lists now, pixels in the workers.

    preset: published weights' evaluation preprocessing, in place of the recipe's (RGB images, as
    torchvision's ImageFolder loads them)."""
    from archc.trainer.augment import BatchPipeline
    from archc.trainer.feed import augmentation

    listing = list_imagefolder(cfg.dataset.split(":", 1)[1], whole_test)
    train, test = listing.train, listing.test
    if cfg.train_subset is not None:
        train = train[: cfg.train_subset]
    if cfg.test_subset is not None:
        test = test[: cfg.test_subset]
    if not test or (not train and not whole_test):
        raise DataError(f"{listing.name}: empty {'train' if not train else 'test'} split")
    val: list[tuple[str, int]] = []
    if augment_train and cfg.val_split > 0 and train:  # training, not `archc evaluate`
        from archc.trainer.validation import split_indices

        keep, held = split_indices(
            torch.tensor([label for _, label in train]),
            len(listing.classes),
            cfg.val_split,
            listing.name,
        )
        train, val = [train[i] for i in keep.tolist()], [train[i] for i in held.tolist()]
    channels, first, _ = header_stats(train or test)
    if preset is not None:
        channels, size = 3, (preset.crop, preset.crop)
    elif cfg.resize is not None:
        size = cfg.resize
    elif input_shape is not None and len(input_shape) == 3:
        size = (int(input_shape[1]), int(input_shape[2]))
    else:
        size = first
    pad, flip = augmentation(cfg, max(1, size[0] // 8), True) if augment_train else (0, False)
    if cfg.recipe == "imagenet":
        pad = 0
    train_files = ImageFiles(train, channels, train_transform(cfg, size, pad, flip))
    evaluation = preset.transform() if preset is not None else eval_transform(cfg, size)
    test_files = ImageFiles(test, channels, evaluation)
    val_files = ImageFiles(val, channels, evaluation) if val else None
    if normalization is not None:
        mean, std = normalization
    elif preset is not None:
        mean, std = preset.normalization()
    elif cfg.recipe == "imagenet" and channels == 3:
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    else:
        mean, std = estimate_stats(ImageFiles(train or test, channels, eval_transform(cfg, size)))
    pipeline = BatchPipeline.normalising(
        mean, std, channels_last=bool(cfg.channels_last), device=device
    )
    return StreamFeed(
        path="stream",
        name=listing.name,
        classes=listing.classes,
        train_images=len(train),
        test_images=len(test),
        crop_padding=pad,
        hflip=flip,
        mean=mean,
        std=std,
        pipeline=pipeline,
        device=device,
        dist=dist,
        channels=channels,
        train_files=train_files,
        test_files=test_files,
        val_files=val_files,
        val_images=len(val),
        workers=loader_workers(cfg, dist.local_world),
    )
