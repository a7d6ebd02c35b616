"""The trust split: a spec's `train:` may describe a recipe, never paths, processes or machine
resources; and the workers `--nproc` starts cannot import modules lying beside the spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archc import load
from archc.compiler.train_config import RUNTIME_FIELDS, TrainConfig
from tests.conftest import archc_here, clean_env
from tests.robustness.conftest import assert_positioned, spec_error

HEAD = "name: t\ninput: [1, 8, 8]\nlayers:\n  - flatten\n  - linear: 4\ntrain:\n  epochs: 1\n"
# one value per runner-only field; the refusal must come before the value is even validated
SAMPLE: dict[str, str] = {
    "out": "/tmp/elsewhere", "data_dir": "/etc", "init_from": "/etc/passwd", "resume": "true",
    "download": "true", "device": "cuda", "workers": "1000000", "nproc": "1024", "compile": "true",
    "log": "quiet", "tensorboard": "true", "data_path": "stream", "loader_workers": "64",
    "memory_limit": "1T", "checkpoint_every": "1",
    "nnodes": "1000", "node_rank": "0", "rdzv_endpoint": '"evil.example:29400"',
}  # fmt: skip


def test_the_runner_only_fields_are_declared_on_the_model() -> None:
    assert set(SAMPLE) == RUNTIME_FIELDS
    schema = TrainConfig.model_json_schema()["properties"]
    assert {name for name, prop in schema.items() if prop.get("runner_only")} == RUNTIME_FIELDS
    assert {"lr", "epochs", "optimizer", "augment", "dataset", "synthetic_size"}.isdisjoint(
        RUNTIME_FIELDS
    )


@pytest.mark.parametrize("key", sorted(RUNTIME_FIELDS))
def test_a_spec_may_not_carry_a_runner_only_setting(key: str) -> None:
    text = HEAD + f"  {key}: {SAMPLE[key]}\n"
    exc = spec_error(load, text)
    assert_positioned(exc, text)
    assert (exc.line, exc.col) == (8, 3), exc.render()
    assert f"train: '{key}' is for the person running archc (--{key.replace('_', '-')}" in str(exc)


@pytest.mark.parametrize(
    "value", ['"imagefolder:/etc"', '"imagefolder:."', "\"${'imagefolder:' + '/etc'}\""]
)
def test_a_spec_may_name_a_dataset_but_not_a_path(value: str) -> None:
    text = HEAD + f"  dataset: {value}\n"
    exc = spec_error(load, text)
    assert (exc.line, exc.col) == (8, 3), exc.render()
    assert "names a path" in str(exc) and "/etc" not in str(exc)


def test_a_recipe_is_accepted() -> None:
    text = HEAD + (
        "  dataset: digits\n  optimizer: adamw\n  lr: 0.001\n"
        "  augment: false\n  synthetic_size: [64, 16]\n"
    )
    assert load(text).train.optimizer == "adamw"


def test_check_refuses_nproc_in_a_spec_with_a_position(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(HEAD + "  nproc: 2\n")
    result = archc_here("check", str(spec))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{spec}:8:3: train: 'nproc' is for the person running archc" in result.stderr


def test_workers_are_started_with_a_safe_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from archc.trainer import distributed

    seen: dict[str, Any] = {}

    def fake_run(
        command: list[str], env: dict[str, str], check: bool
    ) -> subprocess.CompletedProcess[str]:
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(distributed.subprocess, "run", fake_run)
    assert distributed.launch("spec.yaml", [], {"epochs": 1}, TrainConfig(nproc=2)) == 0
    command = seen["command"]
    # the launcher and every worker run `python -P -m ...`: -P keeps the
    # working directory off sys.path
    assert command[:4] == [sys.executable, "-P", "-m", "torch.distributed.run"]
    worker = command[command.index("--no-python") + 1 :]
    assert worker[:4] == [sys.executable, "-P", "-m", "archc.trainer"]
    assert seen["env"]["PYTHONSAFEPATH"] == "1"


EVIL = """
from pathlib import Path
Path(__file__).with_name("PWNED").write_text("a module beside the spec ran")
raise SystemExit("imported from the working directory")
"""


@pytest.mark.slow
def test_a_module_beside_the_spec_never_runs_in_the_workers(tmp_path: Path) -> None:
    """The reproducer: `pydantic.py` beside the spec, `archc train --nproc 2` started in that
    directory. The same launch is the test of `--nproc` itself (four interpreters, three of them
    importing torch, so no other test starts one): the run has world size 2; its launcher, which
    never imports torch (its workers do), prints the one result row and nothing else; and, each
    rank training on its half of every global batch while DDP averages the gradients, the weights
    rank 0 wrote are allclose to those of one process with the whole batch (trained here), far
    from where both started."""
    import torch

    from archc.api import build
    from archc.trainer.checkpoint import load_checkpoint
    from tests.conftest import archc_here

    spec = tmp_path / "spec.yaml"
    spec.write_text(HEAD.replace("input: [1, 8, 8]", "input: [3, 8, 8]")
                    + "  dataset: synthetic\n  synthetic_size: [64, 16]\n"
                    "  synthetic_classes: 4\n  batch_size: 16\n")  # fmt: skip
    for name in ("pydantic", "torch", "archc", "yaml"):
        (tmp_path / f"{name}.py").write_text(EVIL)
    archc_exe = shutil.which("archc", path=str(Path(sys.executable).parent))
    assert archc_exe is not None
    quiet = ["--no-pages", "--no-tensorboard"]  # pages after --nproc: docs/trainer.md example
    result = subprocess.run(  # -X importtime: the launcher's imports (its children's are not shown)
        [sys.executable, "-X", "importtime", archc_exe, "train", "spec.yaml", "--nproc", "2",
         "--out", "run", "--log", "plain", *quiet],
        cwd=tmp_path, env=clean_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert not (tmp_path / "PWNED").exists(), result.stderr[-2000:]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("t  synthetic  epochs 1  ") and result.stdout.count("\n") == 1
    imported = [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]  # fmt: skip
    assert "archc.trainer.api" in imported and "torch" not in imported  # torch is the workers'

    single = archc_here("train", str(spec), "--out", str(tmp_path / "single"), "--log", "quiet",
                        *quiet)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    records = [json.loads((tmp_path / d / "result.json").read_text()) for d in ("run", "single")]
    assert [r["world_size"] for r in records] == [2, 1]
    assert [r["dataset"]["test_images"] for r in records] == [16, 16]  # the shards summed
    assert abs(records[0]["final_test_acc"] - records[1]["final_test_acc"]) <= 1 / 16
    two, one = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("run", "single"))
    torch.manual_seed(TrainConfig().seed)  # the trainer builds the model under the run's seed
    initial = build(load(spec)).state_dict()
    assert one.keys() == two.keys() == initial.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
        assert not torch.allclose(initial[key], one[key], atol=1e-3), key


def test_synthetic_data_that_cannot_fit_is_refused_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from archc.trainer import data
    from archc.trainer.errors import TrainError

    monkeypatch.setattr(data, "available_memory", lambda: 100_000_000)
    cfg = TrainConfig(synthetic_size=(20_000_000, 64), synthetic_shape=(3, 8, 8))
    with pytest.raises(TrainError, match=r"synthetic data of 20,000,064 images 3x8x8 needs 3.8 GB"):
        data.load_dataset(cfg)


def test_atomic_writes_never_touch_the_process_umask(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Setting the umask is process-wide (a race with other threads):
    the kernel applies it instead."""
    import os

    from archc.atomic import atomic_write_bytes

    mask = os.umask(0o027)
    os.umask(mask | 0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("os.umask called"))
        atomic_write_bytes(tmp_path / "r.json", b"{}")
    finally:
        monkeypatch.undo()
        os.umask(mask)
    assert (tmp_path / "r.json").read_bytes() == b"{}"
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~(mask | 0o027)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("found", ["result.json", "metrics.csv", "best.pt"])
def test_a_new_run_never_writes_over_another_runs_files(
    tmp_path: Path, found: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from archc.cli import main
    from tests.robustness import harness as h

    out = tmp_path / "someone_elses"
    out.mkdir()
    (out / found).write_text("not yours")
    (out / ".notes.tmp-1").write_text("not yours either")
    assert main(h.train_argv(out, "--log", "quiet")) == 1
    assert f"{out} already holds a run ({found}); pass --resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted([found, ".notes.tmp-1"])
    assert (out / found).read_text() == "not yours"


@pytest.mark.parametrize("setting", ["resize: 100000", "synthetic_shape: [3, 100000, 100000]"])
def test_a_recipe_cannot_ask_for_huge_images(setting: str) -> None:
    text = HEAD + f"  {setting}\n"
    exc = spec_error(load, text)
    assert exc.line == 8 and "sizes are at most 16384" in str(exc), exc.render()
