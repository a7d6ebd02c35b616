"""Data-parallel training: the process group under torchrun, and `--nproc N` launching torchrun.

Every rank holds the whole dataset and the same per-epoch plan; rank r trains on slice r of each
global batch, so N processes with batch B/N each see exactly the batches of one process with B.

The launcher only starts torchrun and reads rank 0's record, so this module imports torch where a
process group is used, not when it is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archc.compiler.train_config import TrainConfig, default_threads
from archc.trainer.errors import TrainError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run (world 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def init(info: DistInfo, device: torch.device) -> bool:
    """Join the process group (nccl on CUDA, gloo otherwise); True if this call created it."""
    import torch
    import torch.distributed as dist

    if not info.active or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def shutdown(created: bool) -> None:
    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.active:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.active:
        import torch.distributed as dist

        dist.barrier()


def launch(spec_path: str, cli_args: list[str], config: dict[str, Any], cfg: TrainConfig) -> int:
    """Run `torchrun --nproc_per_node N` over `python -P -m archc.trainer ...` (standalone on one
    machine, a c10d rendezvous at cfg.rdzv_endpoint across cfg.nnodes); return its exit code.

    config holds the already-resolved flag values, passed whole so the workers need no re-parsing.
    `-P` (and PYTHONSAFEPATH for any Python they start) keeps the working directory off sys.path
    in the launcher and in every worker: `-m` would otherwise put it first, and a `pydantic.py`
    lying beside a spec would run inside the workers.
    """
    command = [
        sys.executable, "-P", "-m", "torch.distributed.run", f"--nproc_per_node={cfg.nproc}",
        *rendezvous_args(cfg, config),
        "--no-python", sys.executable, "-P", "-m", "archc.trainer",
        spec_path, *cli_args, "--config-json", json.dumps(config),
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(default_threads(cfg.nproc)),  # torchrun would set 1
        "PYTHONSAFEPATH": "1",
    }
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as exc:
        raise TrainError(f"cannot start torchrun: {exc}") from None


def rendezvous_args(cfg: TrainConfig, config: dict[str, Any]) -> list[str]:
    """torchrun's rendezvous flags: --standalone on one machine; across machines c10d at the
    endpoint, with a run id every machine derives alike from the run directory."""
    if cfg.nnodes == 1:
        return ["--standalone"]
    run_id = "archc-" + hashlib.sha256(str(config.get("out", "")).encode()).hexdigest()[:16]
    args = [
        f"--nnodes={cfg.nnodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={cfg.rdzv_endpoint}",
        f"--rdzv-id={run_id}",
    ]
    if cfg.node_rank is not None:
        args.append(f"--node-rank={cfg.node_rank}")
    return args
