"""Tar shards in the WebDataset format: a dataset for network storage, read front to back.

A shard is a tar file (plain or compressed, as `webdataset` reads them); a sample is consecutive
members sharing a key (`webdataset`'s rule: the name up to the first dot of its last component):
`KEY.jpg` (or .png, .jpeg, ...: the image file's bytes as stored) and `KEY.cls` (the class index as
text). The shards are written with the `webdataset` package's TarWriter, so `webdataset.WebDataset`
reads them, and shards it wrote read here. `index.json` beside the shards names the classes and
each shard's sample count, which is what lets every process know the epoch's length before
reading anything.

    python -m archc.trainer.shards FOLDER OUT [--shard-size N] #
    imagefolder -> OUT/{train,val}-*.tar

`--dataset shards:OUT` then trains on them (always streaming). Per epoch the train shards are
shuffled (by seed and epoch) and dealt to the processes; each process reads its shards in order
through a seeded shuffle buffer. Its DataLoader workers all read that one stream and each decodes
only the batches it owns (batch k: worker k mod workers), so the batches, and a resumed run's
(positions already trained are skipped, not decoded), do not depend on the number of workers.
That positional stream is archc's own, on `tarfile` with webdataset's naming rules: webdataset's
pipeline (`WebDataset(...).shuffle(...)`) cannot restart exactly mid-epoch, and it reads members
of any size, where a member over 64 MiB here is a damaged or hostile shard. Members are read from
the tar stream, never extracted: names in a shard cannot reach the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from archc.compiler.train_config import TrainConfig
from archc.trainer.errors import DataError
from archc.trainer.feed import EPOCH_SEED_STRIDE, Feed

if TYPE_CHECKING:
    from archc.trainer.distributed import DistInfo
    from archc.trainer.stream import EvalPreset, Transform

INDEX = "index.json"
FORMAT = "archc-shards"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp")
MAX_MEMBER_BYTES = 64 * 2**20  # a sample's image; larger is a damaged or hostile shard
SHUFFLE_BUFFER = 256
DEFAULT_SHARD_SIZE = 1000


@dataclass(frozen=True)
class Shard:
    path: Path
    count: int


@dataclass(frozen=True)
class ShardIndex:
    root: Path
    classes: tuple[str, ...]
    train: tuple[Shard, ...]
    val: tuple[Shard, ...]


def read_index(root: Path) -> ShardIndex:
    """ROOT/index.json, checked: plain file names inside ROOT, non-negative counts."""
    path = root / INDEX
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"shards: cannot read {path}: {exc}; write shards "
            f"with `python -m archc.trainer.shards FOLDER {root}`"
        ) from None
    try:
        if data.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} index")
        classes = tuple(str(c) for c in data["classes"])
        splits = {}
        for split in ("train", "val"):
            shards = []
            for entry in data[split]:
                name, count = str(entry["name"]), int(entry["count"])
                if Path(name).name != name or name in ("", ".", "..") or count < 0:
                    raise ValueError(f"bad shard entry {entry!r}")
                shards.append(Shard(root / name, count))
            splits[split] = tuple(shards)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"shards: {path} is damaged: {exc}") from None
    if len(classes) < 2:
        raise DataError(f"shards: {path} names {len(classes)} classes; need at least 2")
    return ShardIndex(root, classes, splits["train"], splits["val"])


def samples(shard: Path, num_classes: int) -> Iterator[tuple[str, bytes, int]]:
    """(key, image bytes, label) of each sample of a shard, read as a stream (no seeking)."""
    from webdataset.tariterators import base_plus_ext, meta_prefix, meta_suffix

    key, image, label = None, None, None
    try:
        with tarfile.open(shard, "r|*") as tar:
            for member in tar:
                name = member.name
                meta = (
                    "/" not in name and name.startswith(meta_prefix) and name.endswith(meta_suffix)
                )
                if not member.isfile() or meta:
                    continue  # as webdataset: directories, links and __meta__ files are no fields
                member_key, ext = base_plus_ext(name)
                if member_key is None:
                    continue
                if member_key != key:
                    if key is not None:
                        yield _complete(shard, key, image, label)
                    key, image, label = member_key, None, None
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(
                        f"shards: {shard}: {name} is {member.size} bytes, over {MAX_MEMBER_BYTES}"
                    )
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if ext.lower() in IMAGE_EXTENSIONS:
                    image = data
                elif ext.lower() == "cls":
                    label = int(data.strip())
                    if not 0 <= label < num_classes:
                        raise DataError(
                            f"shards: {shard}: {name} is class {label}, "
                            f"outside 0..{num_classes - 1}"
                        )
            if key is not None:
                yield _complete(shard, key, image, label)
    except (OSError, tarfile.TarError, ValueError, EOFError) as exc:
        raise DataError(f"shards: cannot read {shard}: {exc}") from None


def _complete(
    shard: Path, key: str, image: bytes | None, label: int | None
) -> tuple[str, bytes, int]:
    if image is None or label is None:
        raise DataError(
            f"shards: {shard}: sample {key} lacks its {'image' if image is None else '.cls label'}"
        )
    return key, image, label


def steps_per_epoch(shards: tuple[Shard, ...], world: int, local_batch: int) -> int:
    """Steps every process can take whatever shards the epoch deals it: each gets at least
    len(shards) // world of them, so at least the samples of that many smallest shards."""
    if len(shards) < world:
        raise DataError(
            f"shards: {len(shards)} train shards for {world} "
            "processes; write smaller shards (--shard-size)"
        )
    guaranteed = sum(sorted(s.count for s in shards)[: len(shards) // world])
    return guaranteed // local_batch


class ShardStream(IterableDataset):
    """One process's training samples of an epoch, transformed, for DataLoader workers."""

    def __init__(
        self,
        index: ShardIndex,
        transform: Transform,
        channels: int,
        rank: int,
        world: int,
        seed: int,
        local_batch: int,
    ) -> None:
        self.index, self.transform, self.channels = index, transform, channels
        self.rank, self.world, self.seed, self.local_batch = rank, world, seed, local_batch
        self.epoch, self.start_step = 0, 0
        self.steps = steps_per_epoch(index.train, world, local_batch)

    def ordered(self) -> Iterator[tuple[int, str, bytes, int]]:
        """(position, key, bytes, label) of this process's epoch, through the shuffle buffer."""
        gen = torch.Generator().manual_seed((self.seed * EPOCH_SEED_STRIDE + self.epoch) * 1009)
        order = torch.randperm(len(self.index.train), generator=gen).tolist()
        mine = [self.index.train[i] for i in order[self.rank :: self.world]]
        buffer_gen = torch.Generator().manual_seed(
            (self.seed * EPOCH_SEED_STRIDE + self.epoch) * 1009 + 1 + self.rank
        )
        buffer: list[tuple[str, bytes, int]] = []
        position, total = 0, self.steps * self.local_batch

        def drawn() -> tuple[str, bytes, int]:
            pick = int(torch.randint(len(buffer), (1,), generator=buffer_gen))
            buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
            return buffer.pop()

        for shard in mine:
            for sample in samples(shard.path, len(self.index.classes)):
                buffer.append(sample)
                if len(buffer) >= SHUFFLE_BUFFER:
                    yield (position, *drawn())
                    position += 1
                    if position == total:
                        return
        while buffer and position < total:
            yield (position, *drawn())
            position += 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        from archc.trainer.stream import decode_bytes, seeded

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        first = self.start_step * self.local_batch
        for position, key, data, label in self.ordered():
            if (
                position < first
                or ((position // self.local_batch) - self.start_step) % workers != worker
            ):
                continue  # trained before the checkpoint, or another worker's batch
            image = decode_bytes(data, self.channels, key)
            seed = (
                ((self.seed * EPOCH_SEED_STRIDE + self.epoch) << 32) + zlib.crc32(key.encode())
            ) % 2**63
            yield seeded(self.transform, image, seed), label


class ShardEval(IterableDataset):
    """The val shards, sample p to process p mod world and, within it, to one worker."""

    def __init__(
        self,
        index: ShardIndex,
        transform: Transform,
        channels: int,
        rank: int,
        world: int,
        limit: int | None,
    ) -> None:
        self.index, self.transform, self.channels = index, transform, channels
        self.rank, self.world, self.limit = rank, world, limit

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        from archc.trainer.stream import decode_bytes, seeded

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        position = 0
        for shard in self.index.val:
            for key, data, label in samples(shard.path, len(self.index.classes)):
                if self.limit is not None and position >= self.limit:
                    return
                if (
                    position % self.world == self.rank
                    and (position // self.world) % workers == worker
                ):
                    yield seeded(self.transform, decode_bytes(data, self.channels, key), 0), label
                position += 1


@dataclass
class ShardFeed(Feed):
    """Tar shards streamed through DataLoader workers (fresh each
    epoch: they read from the start)."""

    stream: ShardStream | None = None
    evaluation: ShardEval | None = None
    workers: int = 0

    def train_batches(
        self, epoch: int, start_step: int, seed: int, global_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.stream is not None
        self.stream.epoch, self.stream.start_step = epoch, start_step
        loader = self._loader(self.stream, global_batch // self.dist.world)
        for x, y in self._batches(loader):
            yield (
                self.pipeline.eval_batch(x.to(self.device, non_blocking=True)),
                y.to(self.device, non_blocking=True),
            )

    def steps(self, global_batch: int) -> int:
        assert self.stream is not None
        if self.stream.steps == 0:
            raise DataError(
                f"{self.name}: fewer training samples per process than one "
                f"batch of {global_batch // self.dist.world}; lower --batch-size"
            )
        return self.stream.steps

    def test_batches(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.evaluation is not None
        for x, y in self._batches(self._loader(self.evaluation, batch)):
            yield (
                self.pipeline.eval_batch(x.to(self.device, non_blocking=True)),
                y.to(self.device, non_blocking=True),
            )

    def sample(self) -> torch.Tensor:
        assert self.evaluation is not None
        images = []
        for image, _ in ShardEval(
            self.evaluation.index, self.evaluation.transform, self.channels, 0, 1, 2
        ):
            images.append(image)
        return self.pipeline.eval_batch(torch.stack(images).to(self.device))

    def _loader(self, dataset: IterableDataset, batch: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
            generator=torch.Generator().manual_seed(0),
        )  # its seed draw leaves the run's RNG alone; fmt: skip

    @staticmethod
    def _batches(loader: DataLoader) -> Iterator[Any]:
        from archc.trainer.stream import without_worker_traceback

        batches = iter(loader)
        while True:
            try:
                yield next(batches)
            except StopIteration:
                return
            except DataError as exc:
                raise without_worker_traceback(exc) from None


def open_shards(
    cfg: TrainConfig, input_shape: tuple[int, ...] | None, dist: DistInfo, device: torch.device,
    normalization: tuple[torch.Tensor, torch.Tensor] | None, *, augment_train: bool = True,
    preset: EvalPreset | None = None,
) -> ShardFeed:  # fmt: skip
    from archc.trainer.augment import BatchPipeline
    from archc.trainer.feed import augmentation
    from archc.trainer.stream import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        decode_bytes,
        eval_transform,
        loader_workers,
        seeded,
        train_transform,
    )

    index = read_index(Path(cfg.dataset.split(":", 1)[1]).expanduser())
    if not index.val or (augment_train and not index.train):  # evaluation needs only the val shards
        missing = "val" if not index.val else "train"
        raise DataError(f"shards: {index.root / INDEX} lists no {missing} shards")
    first_shard = next(s for s in (*index.train, *index.val) if s.count)
    key, data, _ = next(samples(first_shard.path, len(index.classes)))
    first = decode_bytes(data, None, key)
    channels = 1 if first.mode in ("1", "L", "I;16", "I") and preset is None else 3
    if preset is not None:
        size = (preset.crop, preset.crop)
    elif cfg.resize is not None:
        size = cfg.resize
    elif input_shape is not None and len(input_shape) == 3:
        size = (int(input_shape[1]), int(input_shape[2]))
    else:
        size = (first.size[1], first.size[0])
    pad, flip = augmentation(cfg, max(1, size[0] // 8), True) if augment_train else (0, False)
    if cfg.recipe == "imagenet":
        pad = 0
    local = cfg.batch_size // dist.world
    stream = None
    if index.train:
        transform = train_transform(cfg, size, pad, flip)
        stream = ShardStream(index, transform, channels, dist.rank, dist.world, cfg.seed, local)
    if (
        stream is not None and cfg.train_subset is not None
    ):  # the first train_subset images of each epoch
        stream.steps = min(stream.steps, cfg.train_subset // cfg.batch_size)
    test_images = (
        sum(s.count for s in index.val)
        if cfg.test_subset is None
        else min(cfg.test_subset, sum(s.count for s in index.val))
    )
    evaluation_transform = preset.transform() if preset is not None else eval_transform(cfg, size)
    evaluation = ShardEval(index, evaluation_transform, channels, dist.rank, dist.world,
                           test_images)  # fmt: skip
    if normalization is not None:
        mean, std = normalization
    elif preset is not None:
        mean, std = preset.normalization()
    elif cfg.recipe == "imagenet" and channels == 3:
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    else:  # estimated on the first 256 samples of the first train (else val) shard
        values = []
        first_path = (index.train or index.val)[0].path
        for i, (k, d, _) in enumerate(samples(first_path, len(index.classes))):
            if i == 256:
                break
            values.append(
                seeded(eval_transform(cfg, size), decode_bytes(d, channels, k), 0)
                .to(torch.float64)
                .div_(255)
                .flatten(1)
            )
        pixels = torch.cat(values, dim=1)
        mean, std = pixels.mean(1).float(), pixels.std(1, unbiased=False).clamp_min(1e-3).float()
    pipeline = BatchPipeline.normalising(
        mean, std, channels_last=bool(cfg.channels_last), device=device
    )
    return ShardFeed(
        path="stream",
        name=f"shards:{index.root}",
        classes=index.classes,
        train_images=stream.steps * cfg.batch_size if stream is not None else 0,
        test_images=test_images,
        crop_padding=pad,
        hflip=flip,
        mean=mean,
        std=std,
        pipeline=pipeline,
        device=device,
        dist=dist,
        channels=channels,
        stream=stream,
        evaluation=evaluation,
        workers=loader_workers(cfg, dist.local_world),
    )


def write_shards(
    folder: Path, out: Path, shard_size: int = DEFAULT_SHARD_SIZE, seed: int = 0
) -> dict[str, Any]:
    """Write imagefolder FOLDER's splits as OUT/train-NNNNNN.tar and OUT/val-NNNNNN.tar plus
    OUT/index.json; train samples shuffled once (by seed) so that each shard mixes the classes.
    Each shard is written by webdataset's TarWriter (fixed mtime: the same folder gives the same
    bytes) under a temporary name, then renamed: an interrupted run leaves no partial shard."""
    from webdataset import TarWriter

    from archc.trainer.stream import list_imagefolder

    listing = list_imagefolder(str(folder))
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "classes": list(listing.classes),
        "train": [],
        "val": [],
    }
    order = torch.randperm(
        len(listing.train), generator=torch.Generator().manual_seed(seed)
    ).tolist()
    for split, items in (("train", [listing.train[i] for i in order]), ("val", listing.test)):
        for number, start in enumerate(range(0, len(items), shard_size)):
            chunk = items[start : start + shard_size]
            name = f"{split}-{number:06d}.tar"
            temporary = out / f".{name}.partial"
            with (
                open(temporary, "wb") as file,
                TarWriter(file, mtime=0, format="PAX_FORMAT") as tar,
            ):
                for offset, (path, label) in enumerate(chunk):
                    ext = Path(path).suffix.lower().lstrip(".") or "jpg"
                    key = f"{split}{start + offset:09d}"
                    tar.write({"__key__": key, ext: Path(path).read_bytes(), "cls": label})
            os.replace(temporary, out / name)
            index[split].append({"name": name, "count": len(chunk)})
    temporary = out / f".{INDEX}.partial"
    temporary.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(temporary, out / INDEX)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m archc.trainer.shards",
        description=(
            "Write an image folder as WebDataset-layout tar shards for `--dataset shards:OUT`."
        ),
    )
    parser.add_argument(
        "folder",
        type=Path,
        help=(
            "imagefolder root: FOLDER/train/CLASS/* and "
            "FOLDER/val/CLASS/* (or FOLDER/CLASS/*, split 80/20)"
        ),
    )
    parser.add_argument("out", type=Path, help="directory for the shards and index.json")
    parser.add_argument(
        "--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N", help="samples per shard"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the one-off shuffle of the train samples"
    )
    args = parser.parse_args(argv)
    if args.shard_size < 1:
        parser.error("--shard-size must be positive")
    try:
        index = write_shards(args.folder, args.out, args.shard_size, args.seed)
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = {split: sum(e["count"] for e in index[split]) for split in ("train", "val")}
    print(f"{args.out}: {len(index['train'])} train shards ({counts['train']} images), "
          f"{len(index['val'])} val shards ({counts['val']} images), "
          f"{len(index['classes'])} classes")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
