"""ConvNeXt and ViT (specs/convnext.yaml, specs/vit.yaml), shrunk, train on CIFAR-shaped synthetic
data with the common trainer; stochastic depth draws only in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import archc
from tests.train.conftest import FAST

CIFAR = FAST | {"synthetic_shape": (3, 32, 32), "epochs": 1, "log": "quiet", "tensorboard": False}
SMALL: dict[str, dict[str, Any]] = {
    "convnext": {
        "depths": [1, 1, 2, 1],
        "widths": [8, 16, 16, 16],
        "sd_prob": 0.5,
        "num_classes": 4,
        "image_size": 32,
    },
    "vit": {
        "patch": 8,
        "layers": 2,
        "heads": 2,
        "hidden": 16,
        "mlp": 32,
        "num_classes": 4,
        "image_size": 32,
    },
}


@pytest.mark.parametrize("family", list(SMALL))
def test_the_family_trains_on_cifar_shaped_data(family: str, tmp_path: Path) -> None:
    result = archc.train(family, spec_overrides=SMALL[family], out=str(tmp_path / "run"), **CIFAR)
    assert result["status"] == "completed"
    model = result.model
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: no stochastic depth, no dropout
    if family == "convnext":
        model.train()
        with torch.no_grad():
            torch.manual_seed(0)
            first = model(x)
            torch.manual_seed(1)
            assert not torch.equal(first, model(x))  # training: blocks dropped per sample
