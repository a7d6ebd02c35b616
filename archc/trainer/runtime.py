"""The execution environment of a run: device, mixed precision, CPU threads and determinism.

These are process-wide torch settings, so `runtime_settings` restores them when the run ends:
a notebook that calls archc.train() keeps its own settings afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from archc.compiler.train_config import TrainConfig, default_threads
from archc.trainer.errors import TrainError

if TYPE_CHECKING:
    from archc.trainer.distributed import DistInfo
    from archc.trainer.feed import Feed


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
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX);
    emulated bf16 is slower than fp32."""
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def amp_dtype(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype for cfg on device (None: full precision) and
    a note when --amp is declined."""
    if not cfg.amp:
        return None, None
    if device.type == "cpu":
        if cfg.amp_dtype == "float16":
            raise TrainError("--amp-dtype float16 is for GPUs; on CPU use bfloat16 (or drop --amp)")
        if cpu_supports_bf16():
            return torch.bfloat16, None
        return (
            None,
            "--amp ignored: this CPU has no native bf16 (AVX512-BF16/AMX), training in fp32",
        )
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if cfg.amp_dtype == "bfloat16" and not bf16_ok:
            raise TrainError(
                "--amp-dtype bfloat16: this GPU does not support it; use --amp-dtype float16"
            )
        if cfg.amp_dtype == "float16" or (cfg.amp_dtype == "auto" and not bf16_ok):
            return torch.float16, None
        return torch.bfloat16, None
    return (torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16), None


@contextlib.contextmanager
def runtime_settings(
    cfg: TrainConfig, device: torch.device, local_world_size: int
) -> Iterator[None]:
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


MEMORY_FORMAT_TRIALS = 3  # timed forward+backward passes per format, after one warm-up each
TRIAL_BATCH = 64
CHANNELS_LAST_MARGIN = (
    0.95  # channels_last must be 5% faster: a tie is noise, and contiguous converts nothing
)
# The trial runs only when the run trains at least this many times the trial's images: channels_last
# saves at most about a quarter of a step on a CPU (1.3x for the benchmark's VGG), so a shorter run
# cannot win back the trial's passes.
TRIAL_PAYBACK = 4


def choose_memory_format(
    cfg: TrainConfig, model: torch.nn.Module, feed: Feed, dist: DistInfo, stored: str | None
) -> tuple[str, str]:
    """("channels_last" or "contiguous", a line for the run log).

    --channels-last/--no-channels-last decide; a resumed run keeps its checkpoint's choice; under
    --deterministic it is contiguous (a timing must not choose the numbers), and so is a run too
    short to repay a trial; otherwise a short trial times forward+backward of a copy of the model
    in both formats (rank 0's choice for every rank); channels_last wins only when clearly faster.
    """
    if cfg.channels_last is not None:
        return ("channels_last" if cfg.channels_last else "contiguous"), ""
    if stored in ("channels_last", "contiguous"):
        return stored, ""
    if cfg.deterministic:
        return "contiguous", "memory format: contiguous (--deterministic: no timed trial)"
    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return "contiguous", ""
    rank_batch = max(1, cfg.batch_size // max(1, dist.world))
    batch = min(TRIAL_BATCH, rank_batch)
    steps = cfg.epochs * (feed.train_images // max(1, cfg.batch_size))
    trial_images = 2 * (MEMORY_FORMAT_TRIALS + 1) * batch
    if steps * rank_batch < TRIAL_PAYBACK * trial_images:
        return "contiguous", (
            f"memory format: contiguous (a run of {steps} steps is too short to repay a timed "
            "trial; --channels-last to choose)"
        )
    sample = feed.sample()
    seconds = {"contiguous": 0.0, "channels_last": 0.0}
    declined = ""
    if dist.main:
        try:
            seconds = _time_formats(model, sample, batch)
        except (
            RuntimeError
        ) as exc:  # e.g. `.view` on an activation that channels_last made non-contiguous
            seconds = {"contiguous": 0.0, "channels_last": float("inf")}
            declined = (
                "memory format: contiguous (channels_last fails "
                f"in this model: {str(exc).splitlines()[0][:120]})"
            )
    faster = torch.tensor(
        [1.0 if seconds["channels_last"] < CHANNELS_LAST_MARGIN * seconds["contiguous"] else 0.0],
        device=sample.device,
    )
    if dist.active:
        from torch import distributed as torch_distributed

        torch_distributed.broadcast(faster, src=0)
    choice = "channels_last" if float(faster) > 0 else "contiguous"
    if declined:
        return choice, declined
    shown = (
        ", ".join(f"{name} {1000 * t:.1f} ms" for name, t in seconds.items()) if dist.main else ""
    )
    return choice, (
        f"memory format: {choice} (measured a forward+backward of {batch} "
        f"images: {shown}; --channels-last or --no-channels-last to choose)"
    )


def _time_formats(model: torch.nn.Module, sample: torch.Tensor, batch: int) -> dict[str, float]:
    """The best time of MEMORY_FORMAT_TRIALS passes per format, interleaved, on a throwaway copy."""
    import copy
    import time

    gen = torch.Generator(device=sample.device).manual_seed(0)
    x = torch.randn((batch, *sample.shape[1:]), generator=gen, device=sample.device)
    best = {"contiguous": float("inf"), "channels_last": float("inf")}
    devices = [sample.device] if sample.device.type == "cuda" else []
    with torch.random.fork_rng(
        devices=devices
    ):  # dropout in the trial draws nothing from the run's RNG
        trial = {name: copy.deepcopy(model) for name in best}
        trial["channels_last"].to(memory_format=torch.channels_last)
        inputs = {"contiguous": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
        trial_model: torch.nn.Module
        for round_ in range(MEMORY_FORMAT_TRIALS + 1):
            for name, trial_model in trial.items():
                trial_model.train()
                if sample.device.type == "cuda":
                    torch.cuda.synchronize(sample.device)
                start = time.perf_counter()
                out = trial_model(inputs[name])
                logits = out[0] if isinstance(out, (tuple, list)) else out
                logits.float().sum().backward()
                if sample.device.type == "cuda":
                    torch.cuda.synchronize(sample.device)
                if round_:
                    best[name] = min(best[name], time.perf_counter() - start)
    return best
