"""Small datasets in the real on-disk formats torchvision downloads, written for offline tests."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _cifar_images(n: int, offset: int) -> np.ndarray:
    """n distinct CIFAR rows (3072 bytes, channel planes R, G, B):
    image i is filled from its index."""
    rows = np.zeros((n, 3072), dtype=np.uint8)
    for i in range(n):
        rows[i, :1024], rows[i, 1024:2048], rows[i, 2048:] = (offset + i) % 256, 100, 200
    return rows


def write_cifar10(root: Path, per_batch: int = 3) -> None:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for b in range(1, 6):
        entry = {
            "batch_label": f"batch {b}",
            "data": _cifar_images(per_batch, 10 * b),
            "labels": [b % 10] * per_batch,
        }
        (base / f"data_batch_{b}").write_bytes(pickle.dumps(entry, protocol=2))
    test = {"data": _cifar_images(4, 0), "labels": [0, 1, 2, 9]}
    (base / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {
        "label_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
    }
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def write_cifar100(root: Path) -> None:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    train = {
        "data": _cifar_images(5, 0),
        "fine_labels": [0, 1, 99, 50, 3],
        "coarse_labels": [0] * 5,
    }
    test = {"data": _cifar_images(2, 7), "fine_labels": [99, 0], "coarse_labels": [0, 0]}
    (base / "train").write_bytes(pickle.dumps(train, protocol=2))
    (base / "test").write_bytes(pickle.dumps(test, protocol=2))
    meta = {
        "fine_label_names": [f"c{i}" for i in range(100)],
        "coarse_label_names": [f"s{i}" for i in range(20)],
    }
    (base / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's IDX files: big-endian magic (0x0803 images, 0x0801
    labels) and dimensions, then bytes."""
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, h, w) + images.tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes()
    )


def write_fashion_mnist(root: Path, train: int = 64, test: int = 32) -> None:
    """FashionMNIST/raw with `train` and `test` random 28x28 images over the ten classes."""
    rng = np.random.default_rng(0)
    raw = root / "FashionMNIST" / "raw"
    write_idx(
        raw, "train", rng.integers(0, 256, (train, 28, 28), dtype=np.uint8), np.arange(train) % 10
    )
    write_idx(
        raw, "t10k", rng.integers(0, 256, (test, 28, 28), dtype=np.uint8), np.arange(test) % 10
    )


def write_imagefolder(
    root: Path,
    classes: int = 3,
    train: int = 8,
    val: int = 4,
    size: tuple[int, int] = (16, 16),
    seed: int = 0,
) -> None:
    """An ImageNet-layout folder: root/train/CLASS/* and root/val/CLASS/*, JPEG and PNG alternating.

    Class k's images are a noisy colour of its own, so a small model separates the classes.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    for split, count in (("train", train), ("val", val)):
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array(
                [(60 * k) % 256, (255 - 70 * k) % 256, (30 + 90 * k) % 256], dtype=np.float64
            )
            for i in range(count):
                pixels = np.clip(colour + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                ext = "JPEG" if i % 2 == 0 else "png"
                Image.fromarray(pixels).save(
                    folder / f"{split}_{k}_{i}.{ext}", format="JPEG" if ext == "JPEG" else "PNG"
                )
