"""Data-parallel training with 2 gloo processes on the CPU: a script of the user's launched by
torchrun. `archc train --nproc 2` (its torchrun launch, world size 2, one printed row) is tested
by tests/robustness/test_trust.py, whose launch also proves that no module beside the spec runs
in the workers: each such launch costs four Python interpreters importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archc.trainer.api import train
from tests.conftest import REPO, clean_env
from tests.train.conftest import FAST, tiny_cnn

RECIPE = FAST | {
    "epochs": 2,
    "batch_size": 64,
}  # 256 images: 4 global batches of 64 per epoch, 8 steps

WORKER = """
import os, sys, torch
from pathlib import Path
from torch import nn
from archc.trainer.api import train

out = Path(sys.argv[1])
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(128, 4))
train(model, **{recipe!r}, out=str(out))
torch.save(model.state_dict(), out / f"rank{{os.environ['RANK']}}.pt")
"""


@pytest.mark.slow
def test_two_gloo_ranks_agree_and_match_one_process_with_the_same_global_batch(
    tmp_path: Path,
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(recipe=RECIPE))
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(out)],
        capture_output=True, text=True, cwd=REPO, env=clean_env(OMP_NUM_THREADS="1"), timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    torch.manual_seed(0)
    single = tiny_cnn()
    record = train(single, **RECIPE, out=str(tmp_path / "single"))
    initial = tiny_cnn()  # a different init: the runs must have moved far from it
    for key, value in single.state_dict().items():
        assert torch.allclose(rank0[key], value, atol=1e-5, rtol=1e-4), key
        assert not torch.allclose(initial.state_dict()[key], value, atol=1e-3)
    ddp_record = json.loads((out / "result.json").read_text())
    assert ddp_record["world_size"] == 2 and record["world_size"] == 1
    assert ddp_record["dataset"]["test_images"] == record["dataset"]["test_images"] == 64
    assert abs(ddp_record["final_test_acc"] - record["final_test_acc"]) <= 1 / 64
