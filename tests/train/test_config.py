"""TrainConfig validation and how flags merge over a spec's `train:` section."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from archc.compiler import train_config
from archc.compiler.train_config import TrainConfig, cap_to_machine, default_threads, machine_cpus
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
    with pytest.raises(
        TrainError, match=r"^invalid training option lr: input should be greater than 0$"
    ):
        resolve_config(resolve_source(tiny_cnn()), {"lr": -1})


def test_recipe_differences_ignore_runtime_fields() -> None:
    a = TrainConfig(lr=0.1, device="cpu", workers=2, out="x")
    b = TrainConfig(lr=0.2, device="auto", workers=1, out="y")
    assert a.recipe_differences(b) == {"lr": (0.1, 0.2)}


def test_config_stays_torch_free() -> None:
    code = (
        "import sys, archc.compiler.train_config, archc.trainer.cli; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_default_threads_follow_omp_num_threads_then_share_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(1) == default_threads(4) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(
        os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False
    )
    assert (default_threads(1), default_threads(2), default_threads(3), default_threads(16)) == (
        8,
        4,
        2,
        1,
    )


def test_counts_are_capped_to_the_cpus_the_machine_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(train_config, "cgroup_cpu_quota", lambda: None)
    assert machine_cpus() == 4
    cfg, notes = cap_to_machine(
        TrainConfig(workers=64, nproc=64, loader_workers=200, batch_size=128)
    )
    assert (cfg.nproc, cfg.workers, cfg.loader_workers) == (4, 1, 4)
    assert notes[0] == (
        "note: --nproc 64 lowered to 4: this machine gives archc 4 CPUs (affinity and cgroup quota)"
    )
    assert [n.split()[1] for n in notes] == ["--nproc", "--workers", "--loader-workers"]
    within = TrainConfig(workers=2, nproc=2)
    assert cap_to_machine(within) == (within, [])
    assert cap_to_machine(TrainConfig(workers=9))[0].workers == 4  # one process: every CPU
    monkeypatch.setattr(
        train_config, "cgroup_cpu_quota", lambda: 2
    )  # a container's quota lowers it
    assert machine_cpus() == 2 and cap_to_machine(TrainConfig(workers=9))[0].workers == 2
    with pytest.raises(
        ValueError, match="divisible by nproc"
    ):  # lowered to 2 processes, 9 images do not split
        cap_to_machine(TrainConfig(nproc=3, batch_size=9))


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "max 100000\n"}, None), ({"cpu.max": "150000 100000\n"}, 2),
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3), ({}, None),
])  # fmt: skip
def test_cgroup_cpu_quota_v2_then_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    quota_files = tuple(
        (str(tmp_path / q), p and str(tmp_path / p))
        for q, p in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"))
    )
    monkeypatch.setattr(train_config, "_CPU_QUOTA_FILES", quota_files)
    assert train_config.cgroup_cpu_quota() == expected


def test_train_notes_the_lowered_thread_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(train_config, "machine_cpus", lambda: 2)
    monkeypatch.delenv("RANK", raising=False)
    source = resolve_source("archc/specs/lenet5.yaml", None, (), None)
    assert resolve_config(source, {"workers": 64}).workers == 2
    assert (
        "note: --workers 64 lowered to 2: this machine gives archc 2 CPUs"
        in capsys.readouterr().err
    )
