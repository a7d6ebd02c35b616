"""What `archc.train(..., nproc=N)` returns once torchrun's workers are done: rank 0's record, and
the trained model and history read from the run's last.pt when first asked for.

The launch itself (torchrun, two gloo ranks, their agreement with one process, and a launcher that
never imports torch) is tested by tests/robustness/test_trust.py's one `--nproc 2` launch, and
across two agents by tests/train/test_multinode.py; here the workers are stood in for by one run in
this process, given exactly the command line the workers get."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from archc.cli import main
from archc.compiler.train_config import TrainConfig
from archc.trainer import distributed
from archc.trainer.api import train
from archc.trainer.checkpoint import load_checkpoint
from tests.train.conftest import weights_of


def test_a_launched_run_returns_rank_0s_record_model_and_history(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[list[str]] = []

    def workers(spec: str, cli_args: list[str], config: dict[str, Any], cfg: TrainConfig) -> int:
        argv = [spec, *cli_args, "--config-json", json.dumps({**config, "nproc": 1})]
        launched.append(argv)
        return main(["train", *argv])  # what each worker runs, as a world of one

    monkeypatch.setattr(distributed, "launch", workers)
    out = tmp_path / "run"
    result = train(tiny_spec, nproc=2, epochs=1, log="quiet", out=str(out))
    assert len(launched) == 1
    assert dict(result) == json.loads((out / "result.json").read_text())
    assert result.history == load_checkpoint(out / "last.pt")["history"] and result.history
    assert result.model is not None and result.model is result.model  # read once
    expected = weights_of(out / "last.pt")
    state = result.model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)
