"""Shared models, specs and recipes for the trainer tests: small
enough to train in seconds on a CPU."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

# A tiny synthetic task: 4 classes of 3x8x8 images; a small CNN learns it in a couple of epochs.
FAST: dict[str, Any] = {
    "dataset": "synthetic",
    "synthetic_size": (256, 64),
    "synthetic_shape": (3, 8, 8),
    "synthetic_classes": 4,
    "batch_size": 32,
    "epochs": 2,
    "lr": 0.05,
    "log": "quiet",
    "workers": 1,
}

TINY_SPEC = """
name: tiny
input: [$in_channels, 8, 8]
params:
  num_classes: 4
  in_channels: 3
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
  - relu
  - maxpool: 2
  - flatten
  - linear: $num_classes
train:
  dataset: synthetic
  synthetic_size: [256, 64]
  synthetic_classes: 4
  batch_size: 32
  epochs: 2
  lr: 0.05
"""

# LeNet-5 (ReLU, max-pool, 28x28 input) with the recipe the acceptance test trains on digits.
LENET5_SPEC = """
name: lenet5
input: [$in_channels, 28, 28]
params:
  num_classes: 10
  in_channels: 1
layers:
  - conv: {out: 6, kernel: 5, padding: 2}
  - relu
  - maxpool: 2
  - conv: {out: 16, kernel: 5}
  - relu
  - maxpool: 2
  - flatten
  - linear: 120
  - relu
  - linear: 84
  - relu
  - linear: $num_classes
train:
  dataset: digits
  resize: 28
  epochs: 12
  batch_size: 32
  lr: 0.05
  deterministic: true
"""


def tiny_cnn(in_channels: int = 3, classes: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, classes),
    )


def lenet5(in_channels: int = 1, classes: int = 10) -> nn.Module:
    """LeNet-5 as in seed 001/004 (28x28 input), with ReLU and max-pooling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes),
    )  # fmt: skip


def spec_file(directory: Path, text: str, name: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch thread per training run, as the specs' `workers: 1` did
    (a spec may not choose threads)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    return spec_file(tmp_path, TINY_SPEC, "tiny")


@pytest.fixture
def lenet5_spec(tmp_path: Path) -> Path:
    """The LeNet-5 spec with its default recipe; becomes `specs/lenet5.yaml` once the zoo has it."""
    return spec_file(tmp_path, LENET5_SPEC, "lenet5")


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]
