"""Streaming data path against torchvision's reference loop, on a generated ImageNet-layout folder.

    python benchmarks/bench_stream.py [--quick] [--workers N]

Data: a folder written here, train/CLASS/*.JPEG (10 classes, 160x120 JPEGs, quality 90; 1,280
images, 640 with --quick). Both candidates deliver the same thing per epoch: every training image
decoded, RandomResizedCrop to 112 (antialiased) and flipped, normalised with ImageNet's constants,
as float batches of 64 in the main process, with the same number of DataLoader workers (default:
the cores, at most 8):

  archc      the trainer's streaming feed (archc.trainer.stream): PIL decode into a uint8 tensor,
             transforms.v2 on the tensor in the workers, uint8 batches, normalised in the main
             process (on the training device), per-sample seeds and DistributedSampler
  reference  torchvision's reference loop: datasets.ImageFolder (PIL loader) with transforms.v2
             Compose(RandomResizedCrop, RandomHorizontalFlip, PILToTensor, ToDtype(float32,
             scale=True), Normalize) and a DataLoader (shuffle, drop_last), as
             references/classification/train.py builds it

(a) archc images/s / reference images/s, median of per-round ratios over interleaved rounds
(target >= 1.0). A loader alone is measured (no model), since the model step is the same code
on both sides; the trainer's overhead over compute is bench_trainer's efficiency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

BATCH = 64
CROP = 112
CLASSES = 10


def write_folder(root: Path, per_class: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(CLASSES):
        folder = root / "train" / f"n{k:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            image = Image.fromarray(base).resize(
                (160, 120), Image.BILINEAR
            )  # smooth, JPEG-like content
            image.save(folder / f"{k}_{i}.JPEG", quality=90)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="640 images, 2 rounds instead of 1,280 and 3"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers for both (default: cores, at most 8)",
    )
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision.transforms import v2

    from archc.compiler.train_config import TrainConfig
    from archc.trainer.distributed import DistInfo
    from archc.trainer.stream import IMAGENET_MEAN, IMAGENET_STD, open_stream

    workers = args.workers or min(8, len(os.sched_getaffinity(0)))
    per_class, rounds = (64, 2) if args.quick else (128, 3)
    torch.set_num_threads(1)  # the main process only normalises; the workers decode
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imagenet"
        write_folder(root, per_class)
        (root / "val").symlink_to(root / "train")
        cfg = TrainConfig(
            dataset=f"imagefolder:{root}",
            recipe="imagenet",
            loader_workers=workers,
            resize=(CROP, CROP),
            batch_size=BATCH,
            val_split=0,
        )
        feed = open_stream(cfg, None, DistInfo(), cpu, None)
        steps = feed.steps(BATCH)
        images = steps * BATCH

        reference_set = datasets.ImageFolder(str(root / "train"), transform=v2.Compose([
            v2.RandomResizedCrop(CROP, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
        ]))  # fmt: skip
        reference_loader = DataLoader(
            reference_set,
            BATCH,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=True,
        )
        epoch = {"archc": 0}

        def archc() -> float:
            start = time.perf_counter()
            seen = 0
            for x, _ in feed.train_batches(epoch["archc"], 0, 0, BATCH):
                assert x.dtype == torch.float32 and x.shape[1:] == (3, CROP, CROP)
                seen += len(x)
            epoch["archc"] += 1
            assert seen == images, (seen, images)
            return time.perf_counter() - start

        def reference() -> float:
            start = time.perf_counter()
            seen = 0
            for x, _ in reference_loader:
                assert x.dtype == torch.float32 and x.shape[1:] == (3, CROP, CROP)
                seen += len(x)
            assert seen == images, (seen, images)
            return time.perf_counter() - start

        candidates = {"archc": archc, "reference": reference}
        load_before = os.getloadavg()[0]
        for run in candidates.values():  # warm-up: worker start-up, page cache
            run()
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for r in range(rounds):
            order = list(candidates) if r % 2 == 0 else list(candidates)[::-1]
            for name in order:
                times[name].append(candidates[name]())
                print(
                    f"round {r + 1}/{rounds} {name:>9}: {times[name][-1]:6.2f}s  "
                    f"{images / times[name][-1]:7.0f} img/s",
                    flush=True,
                )
        load_after = os.getloadavg()[0]
        feed.close()

    speedup = statistics.median(
        ref / ours for ref, ours in zip(times["reference"], times["archc"], strict=True)
    )
    ips = {name: images / statistics.median(t) for name, t in times.items()}
    summary = [
        {
            "metric": (
                "streaming / torchvision ImageFolder + "
                f"DataLoader, {workers} workers, same transforms"
            ),
            "value": round(speedup, 2),
            "unit": "x",
            "target": ">= 1.0",
        },
        {
            "metric": "streaming throughput (decode + RandomResizedCrop 112 + flip + normalise)",
            "value": round(ips["archc"]),
            "unit": "img/s",
            "target": "",
        },
        {
            "metric": "reference throughput",
            "value": round(ips["reference"]),
            "unit": "img/s",
            "target": "",
        },
    ]
    for row in summary:
        print(f"{row['metric']}: {row['value']}{row['unit']} (target {row['target']})")
    write_result("stream", {
        "command": "python benchmarks/bench_stream.py" + (" --quick" if args.quick else "")
        + (f" --workers {args.workers}" if args.workers else ""),
        "summary": summary,
        "setup": {"images_per_epoch": images, "batch": BATCH, "crop": CROP, "workers": workers,
                  "rounds": rounds, "source_images": "160x120 JPEG q90",
                  "load_average_before": load_before, "load_average_after": load_after},
        "seconds": times,
        "images_per_s": ips,
        "notes": (f"Loader throughput only (no model). Load average {load_before:.1f} "
                  f"before, {load_after:.1f} after, on {os.cpu_count()} CPUs shared with "
                  "other jobs: ratios of interleaved rounds, absolute figures vary."),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
