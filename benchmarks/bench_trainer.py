"""Trainer efficiency and throughput against a hand-written training loop, on CIFAR-shaped data.

    python benchmarks/bench_trainer.py [--quick] [--threads N]

Model: the VGG-BN of the CIFAR-10 comparison post (207,002 params); data: archc's synthetic 3x32x32
images, 10 classes; SGD, batch 128, augmentation on (random crop with 4-pixel padding, horizontal
flip). Per round, interleaved (order alternating), each candidate trains the same number of images:

  compute    forward + backward + step on pre-built, pre-normalised batches, in the memory format
             the trainer's start-up trial chose and with denormals flushed
             as the trainer does: the floor
  trainer    archc.train() with its defaults (memory format measured at start-up): its train-loop
             time (sum of epoch times) and its whole wall time
  trainer-nc the same with --no-channels-last (contiguous, the default before the trial)
  loop-w0 the GoogLeNet post's loop: a torchvision-style Dataset (PIL images, Compose(RandomCrop(32,
  loop-w2 padding=4), RandomHorizontalFlip, ToTensor, Normalize)), a DataLoader with 0 or
             min(cpus, 8) workers (the post's choice), loss.item() and accuracy per step
  loop-ftz   loop-w0 with denormals flushed to zero, as the trainer does on CPUs

(a) efficiency = compute time / trainer time (target >= 0.95); (b) trainer images/s / hand-written
loop images/s (target >= 2.5). Ratios are medians of per-round ratios. CPU seconds (this process
plus DataLoader workers) are recorded too: on a machine shared with other jobs they measure the work
done better than wall time does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import median, write_result

BATCH = 128
CLASSES = 10


def vgg_bn():  # type: ignore[no-untyped-def]
    """Seed 000's VGG-BN: cfg [16,16,M,32,32,M,32,32,M,64,64,M,64,64,M], 3x3 pool, 64-64-10 head."""
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for v in (16, 16, "M", 32, 32, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [
                nn.Conv2d(channels, int(v), 3, padding=1),
                nn.BatchNorm2d(int(v)),
                nn.ReLU(True),
            ]
            channels = int(v)
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(True), nn.Linear(64, 64), nn.ReLU(True), nn.Linear(64, CLASSES),
    )  # fmt: skip


class SeedDataset:
    """torchvision's CIFAR10 Dataset in miniature: HWC uint8 arrays, a PIL image per __getitem__."""

    def __init__(self, images, labels, transform) -> None:  # type: ignore[no-untyped-def]
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers): work
    done, whatever the contention."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 1 epoch instead of 3 rounds of 2 epochs"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all cores)"
    )
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from archc.compiler.train_config import TrainConfig
    from archc.trainer.api import train
    from archc.trainer.data import load_dataset
    from archc.trainer.runtime import default_threads

    threads = args.threads or default_threads(1)
    torch.set_num_threads(threads)
    rounds, epochs, n_train, n_test = (1, 1, 1024, 256) if args.quick else (3, 2, 2048, 256)
    data_cfg = {
        "dataset": "synthetic",
        "synthetic_size": (n_train, n_test),
        "synthetic_shape": (3, 32, 32),
        "synthetic_classes": CLASSES,
    }
    data = load_dataset(TrainConfig(**data_cfg))
    mean, std = data.channel_stats()
    steps = epochs * (n_train // BATCH)
    images = steps * BATCH

    def fresh_model():  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        return vgg_bn()

    def sgd(model):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    gen = torch.Generator().manual_seed(0)
    prebuilt = [
        (
            (data.train_x[idx].float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1),
            data.train_y[idx],
        )
        for idx in (torch.randint(0, n_train, (BATCH,), generator=gen) for _ in range(steps))
    ]

    chosen = {"format": "contiguous"}

    def compute() -> float:
        model = fresh_model()
        batches = prebuilt
        if chosen["format"] == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in prebuilt]
        opt = sgd(model)
        model.train()
        torch.set_flush_denormal(
            True
        )  # as the trainer runs on CPUs: the floor under the same settings
        start = time.perf_counter()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        elapsed = time.perf_counter() - start
        torch.set_flush_denormal(False)
        return elapsed

    formats: list[str] = []

    def trainer(channels_last: bool | None = None) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            record = train(fresh_model(), **data_cfg, epochs=epochs, batch_size=BATCH, lr=0.05,
                           weight_decay=5e-4, schedule="none", augment=True, crop_padding=4,
                           hflip=True, workers=threads, log="quiet",
                           channels_last=channels_last, out=str(Path(tmp) / "run"))  # fmt: skip
            wall = time.perf_counter() - start
        assert record["dataset"]["crop_padding"] == 4 and record["dataset"]["hflip"]
        if channels_last is None:
            formats.append(record["memory_format"])
        return record["train_time_s"], wall

    hwc = data.train_x.permute(0, 2, 3, 1).contiguous().numpy()
    labels = data.train_y.numpy()
    seed_transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist()),
    ])  # fmt: skip
    seed_workers = min(os.cpu_count() or 1, 8)

    def seed_loop(workers: int, ftz: bool = False) -> float:
        model = fresh_model()
        opt = sgd(model)
        loader = DataLoader(
            SeedDataset(hwc, labels, seed_transform),
            BATCH,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
        )
        torch.set_flush_denormal(ftz)
        start = time.perf_counter()
        seen = 0
        for _ in range(epochs):
            model.train()
            running, correct = 0.0, 0
            for x, y in loader:
                opt.zero_grad()
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                loss.backward()
                opt.step()
                running += loss.item()
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
        elapsed = time.perf_counter() - start
        torch.set_flush_denormal(False)
        assert seen == images
        return elapsed

    candidates = {
        "compute": compute,
        "trainer": trainer,
        "trainer-nc": lambda: trainer(channels_last=False),
        "loop-w0": lambda: seed_loop(0),
        f"loop-w{seed_workers}": lambda: seed_loop(seed_workers),
        "loop-ftz": lambda: seed_loop(0, ftz=True),
    }
    load_before = os.getloadavg()[0]
    # warm-up: one-off imports (torch._dynamo on the first optimizer) and allocator growth
    trainer()
    chosen["format"] = formats[-1]  # the format the trainer trains in: compute runs in it too
    times: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    walls: list[float] = []
    for r in range(rounds):
        order = list(candidates) if r % 2 == 0 else list(candidates)[::-1]
        for name in order:
            cpu_start = cpu_seconds()
            result = candidates[name]()
            cpu[name].append(cpu_seconds() - cpu_start)
            if name.startswith("trainer"):
                loop_time, wall = result  # type: ignore[misc]
                times[name].append(loop_time)
                if name == "trainer":
                    walls.append(wall)
            else:
                times[name].append(result)  # type: ignore[arg-type]
            print(
                f"round {r + 1}/{rounds} {name:>9}: {times[name][-1]:7.2f}s  "
                f"{images / times[name][-1]:7.0f} img/s",
                flush=True,
            )
    load_after = os.getloadavg()[0]

    def per_round(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    efficiency = per_round(times["compute"], times["trainer"])
    efficiency_wall = per_round(times["compute"], walls)
    seed_name = f"loop-w{seed_workers}"
    speedups = {
        name: per_round(times[name], times["trainer"])
        for name in candidates
        if name.startswith("loop")
    }
    ips = {name: images / median(t) for name, t in times.items()}
    summary = [
        {
            "metric": f"trainer efficiency: compute / train-loop time (both {chosen['format']})",
            "value": round(efficiency, 3),
            "unit": "",
            "target": ">= 0.95",
        },
        {
            "metric": "trainer efficiency: compute / whole archc.train() wall",
            "value": round(efficiency_wall, 3),
            "unit": "",
            "target": "(info)",
        },
        {
            "metric": (
                "trainer (defaults) vs a hand-written loop, DataLoader "
                f"{seed_workers} workers (the GoogLeNet post's choice)"
            ),
            "value": round(speedups[seed_name], 2),
            "unit": "x",
            "target": ">= 2.5",
        },
        {
            "metric": "trainer vs the hand-written loop, DataLoader 0 workers",
            "value": round(speedups["loop-w0"], 2),
            "unit": "x",
            "target": "(info)",
        },
        {
            "metric": "trainer vs the hand-written loop, 0 workers, denormals flushed",
            "value": round(speedups["loop-ftz"], 2),
            "unit": "x",
            "target": "(info)",
        },
        {
            "metric": (
                f"trainer --no-channels-last vs the hand-written loop, {seed_workers} workers"
            ),
            "value": round(per_round(times[seed_name], times["trainer-nc"]), 2),
            "unit": "x",
            "target": "(info)",
        },
        {
            "metric": "trainer train-loop throughput",
            "value": round(ips["trainer"]),
            "unit": "img/s",
            "target": "",
        },
        {
            "metric": "CPU seconds: compute / whole archc.train()",
            "value": round(per_round(cpu["compute"], cpu["trainer"]), 3),
            "unit": "",
            "target": "(info)",
        },
        {
            "metric": (
                f"CPU seconds: hand-written loop ({seed_workers} "
                "workers, incl. workers) / whole archc.train()"
            ),
            "value": round(per_round(cpu[seed_name], cpu["trainer"]), 2),
            "unit": "x",
            "target": "(info)",
        },
    ]
    for row in summary:
        print(f"{row['metric']}: {row['value']}{row['unit']} (target {row['target']})")
    write_result("trainer", {
        "command": "python benchmarks/bench_trainer.py" + (" --quick" if args.quick else "")
        + (f" --threads {args.threads}" if args.threads else ""),
        "summary": summary,
        "memory_formats_chosen": formats,
        "setup": {"model": "VGG-BN of the CIFAR-10 comparison post (207,002 params)",
                  "images_per_candidate": images, "epochs": epochs, "batch": BATCH,
                  "train_images": n_train, "test_images": n_test, "rounds": rounds,
                  "threads": threads,
                  "load_average_before": load_before, "load_average_after": load_after},
        "seconds": times,
        "cpu_seconds": cpu,
        "trainer_wall_seconds": walls,
        "images_per_s": ips,
        "notes": ("compute = forward+backward+step on pre-built batches; the trainer's loop "
                  "time includes batched augmentation, indexing, loss/accuracy bookkeeping "
                  "and the NaN guard; its wall adds data synthesis, the shape check, "
                  "per-epoch test evaluation, checkpoints and metrics files. Load average "
                  f"{load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} CPUs."),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
