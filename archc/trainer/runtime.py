"""The execution environment of a run: device, mixed precision, CPU threads and determinism.

These are process-wide torch settings, so `runtime_settings` restores them when the run ends:
a notebook that calls archc.train() keeps its own settings afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from archc.train_config import TrainConfig, default_threads
from archc.trainer.errors import TrainError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for --device (auto: CUDA, then MPS, then CPU); one GPU per local rank."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "cuda":
        raise TrainError("--device cuda: CUDA is not available on this machine; use --device cpu")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name in ("auto", "mps") and mps_ok:
        return torch.device("mps")
    if name == "mps":
        raise TrainError("--device mps: MPS is not available on this machine; use --device cpu")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_dtype(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype for cfg on device (None: full precision) and a note when --amp is declined."""
    if not cfg.amp:
        return None, None
    if device.type == "cpu":
        if cfg.amp_dtype == "float16":
            raise TrainError("--amp-dtype float16 is for GPUs; on CPU use bfloat16 (or drop --amp)")
        if cpu_supports_bf16():
            return torch.bfloat16, None
        return None, "--amp ignored: this CPU has no native bf16 (AVX512-BF16/AMX), training in fp32"
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if cfg.amp_dtype == "bfloat16" and not bf16_ok:
            raise TrainError("--amp-dtype bfloat16: this GPU does not support it; use --amp-dtype float16")
        if cfg.amp_dtype == "float16" or (cfg.amp_dtype == "auto" and not bf16_ok):
            return torch.float16, None
        return torch.bfloat16, None
    return (torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16), None


@contextlib.contextmanager
def runtime_settings(cfg: TrainConfig, device: torch.device, local_world_size: int) -> Iterator[None]:
    """Apply threads, determinism and (on CPU) flush-to-zero for the run; restore them after.

    Denormal floats appear as gradients and momentum decay and cost some CPUs 10x per operation;
    flushing them to zero changes results by less than float32's smallest normal number.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        torch.set_num_threads(cfg.workers or default_threads(local_world_size))
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if device.type == "cpu":
            torch.set_flush_denormal(True)
        yield
    finally:
        if device.type == "cpu":
            torch.set_flush_denormal(False)  # torch's default; it has no getter to restore from
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
