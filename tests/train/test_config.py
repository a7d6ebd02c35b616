"""TrainConfig validation and how flags merge over a spec's `train:` section."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from archc.train_config import TrainConfig, default_threads
from archc.trainer.api import resolve_config
from archc.trainer.errors import TrainError
from archc.trainer.model import resolve_source
from tests.train.conftest import tiny_cnn


def test_resize_accepts_a_single_side() -> None:
    assert TrainConfig(resize=32).resize == (32, 32)
    assert TrainConfig(resize=(24, 32)).resize == (24, 32)


@pytest.mark.parametrize(
    "bad",
    [
        {"nesterov": True, "momentum": 0.0},
        {"nesterov": True, "optimizer": "adam"},
        {"batch_size": 30, "nproc": 4},
        {"milestones": [0.75, 0.5]},
        {"resize": (0, 32)},
        {"lr": 0},
        {"unknown_knob": 1},
    ],
)
def test_invalid_configs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TrainConfig(**bad)


def test_flags_override_spec_defaults_and_keep_the_rest(tiny_spec) -> None:
    source = resolve_source(tiny_spec)
    cfg = resolve_config(source, {"lr": 0.2})
    assert cfg.lr == 0.2
    assert cfg.dataset == "synthetic" and cfg.synthetic_size == (256, 64) and cfg.epochs == 2


def test_unknown_option_gets_a_suggestion() -> None:
    with pytest.raises(TrainError, match=r"unknown training option 'lrr' \(did you mean 'lr'\?\)"):
        resolve_config(resolve_source(tiny_cnn()), {"lrr": 0.1})


def test_invalid_value_is_one_line() -> None:
    with pytest.raises(TrainError, match=r"^invalid training option lr: input should be greater than 0$"):
        resolve_config(resolve_source(tiny_cnn()), {"lr": -1})


def test_recipe_differences_ignore_runtime_fields() -> None:
    a = TrainConfig(lr=0.1, device="cpu", workers=2, out="x")
    b = TrainConfig(lr=0.2, device="auto", workers=1, out="y")
    assert a.recipe_differences(b) == {"lr": (0.1, 0.2)}


def test_config_stays_torch_free() -> None:
    code = "import sys, archc.train_config, archc.trainer.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_default_threads_follow_omp_num_threads_then_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(1) == default_threads(4) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    assert (default_threads(1), default_threads(2), default_threads(3), default_threads(16)) == (8, 4, 2, 1)
