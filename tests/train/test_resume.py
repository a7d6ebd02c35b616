"""--resume continues exactly: final weights equal an uninterrupted run's,
after an exception or SIGKILL."""

from __future__ import annotations

import csv
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from archc.trainer.api import train
from archc.trainer.augment import BatchPipeline
from archc.trainer.checkpoint import load_checkpoint
from tests.conftest import FORKSERVER, archc_here
from tests.robustness import harness as h
from tests.train.conftest import FAST, spec_file, weights_of

pytestmark = FORKSERVER

RECIPE = FAST | {"epochs": 3, "deterministic": True}


def _dropout_cnn() -> nn.Module:
    """Dropout makes the result depend on the global RNG, so resuming must restore it too."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 4),
    )


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(_dropout_cnn(), **RECIPE, out=str(tmp_path / "ref"))
    original = BatchPipeline.train_batch
    calls = 0

    def interrupted(self: BatchPipeline, *args: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 12:  # epoch 2 of 3, step 4 of 8
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(BatchPipeline, "train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_dropout_cnn(), **RECIPE, out=str(tmp_path / "run"))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    record = train(_dropout_cnn(), **RECIPE, out=str(tmp_path / "run"), resume=True)
    assert record["resumed_from_epoch"] == 1
    ref, got = weights_of(tmp_path / "ref" / "last.pt"), weights_of(tmp_path / "run" / "last.pt")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


KILL_SPEC = """
name: killable
input: [3, 16, 16]
layers:
  - conv: {out: 16, kernel: 3, padding: 1}
  - relu
  - dropout: 0.2
  - maxpool: 2
  - conv: {out: 16, kernel: 3, padding: 1}
  - relu
  - global_avgpool
  - flatten
  - linear: 4
train:
  dataset: synthetic
  synthetic_size: [1024, 64]
  synthetic_classes: 4
  batch_size: 32
  epochs: 3
  lr: 0.05
  deterministic: true
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, KILL_SPEC, "killable")
    train(spec, out=str(tmp_path / "ref"), log="quiet")
    run = tmp_path / "run"
    # `archc train` in a child of the harness's forkserver (torch already imported), killed by
    # the clock rather than at a hook: half an epoch after epoch 1 ends; the resume runs here.
    child = h.start(["train", str(spec), "--out", str(run), "--log", "plain", "--no-pages"],
                    tmp_path / "run.log")  # fmt: skip
    try:
        deadline, line = time.monotonic() + 240, None
        while line is None:
            alive = child.process.is_alive()
            line = next((x for x in child.output().splitlines() if x.startswith("epoch 1/3")), None)
            assert line is not None or alive, (
                f"training ended before its first epoch:\n{child.output()}"
            )
            assert time.monotonic() < deadline, child.output()
            time.sleep(0.01)
        epoch_seconds = float(re.search(r"([\d.]+)s$", line.strip()).group(1))  # type: ignore[union-attr]
        time.sleep(epoch_seconds / 2)  # into the middle of epoch 2
        child.kill()
        assert child.process.exitcode == -signal.SIGKILL, child.output()
    finally:
        child.kill()
    assert load_checkpoint(run / "last.pt")["epoch"] < 3  # the kill interrupted the run
    result = archc_here("train", str(spec), "--out", str(run), "--resume", "--no-pages")
    assert result.returncode == 0, result.stderr
    ref, got = weights_of(tmp_path / "ref" / "last.pt"), weights_of(run / "last.pt")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
