"""The training loop: epochs of batched, augmented steps, evaluation, checkpoints and metrics.

Every random choice of an epoch (sample order, crop offsets, flips) is a function of (seed, epoch)
(and the sample, on the streaming path; see feed.py). That makes an epoch, and any step of it, a
pure function of the checkpointed state, so --resume continues exactly, from an epoch's end or
(with --checkpoint-every) from its middle, and data-parallel ranks agree on the global batches.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from archc.compiler.train_config import TrainConfig
from archc.trainer.checkpoint import (
    check_compatible,
    check_training_state,
    link_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from archc.trainer.distributed import DistInfo, all_reduce_sum
from archc.trainer.errors import CheckpointError, DivergenceError, TrainError
from archc.trainer.evaluate import EvalResult, eval_batches
from archc.trainer.feed import Feed
from archc.trainer.metrics import write_metrics
from archc.trainer.progress import Reporter
from archc.trainer.schedule import LrSchedule

if TYPE_CHECKING:
    from archc.trainer.tensorboard import TensorBoardLog

CUDA_SYNC_EVERY = 25  # steps between host syncs (loss check, progress) where kernels run async


@dataclass
class Run:
    """Everything one training run needs, prepared by api.train."""

    cfg: TrainConfig
    model: nn.Module
    feed: Feed
    device: torch.device
    autocast: torch.dtype | None
    dist: DistInfo
    out: Path
    reporter: Reporter
    head_weights: list[float] | None
    normalization: dict[str, list[float]]
    spec_info: dict[str, Any]
    memory_format: str = "contiguous"
    dataset_info: dict[str, Any] = field(
        default_factory=dict
    )  # name, classes, stored image shape: for predict


@dataclass
class Outcome:
    """What the loop produced, for the result record."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float | None = (
        None  # None without a validation split: best.pt is then the last epoch
    )
    best_test_acc: float = -1.0  # test accuracy of the best epoch (reported, never used to choose)
    best_epoch: int = 0
    stopped_early: bool = False
    train_time_s: float = 0.0
    images: int = 0
    resumed_from: int | None = None


def make_optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def objective(
    out: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor],
    y: torch.Tensor,
    weights: list[float] | None,
    cfg: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(main logits, loss): cross-entropy of the main output plus weighted extra-head losses."""
    if not isinstance(out, (tuple, list)):
        return out, F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
    main, extras = out[0], out[1:]
    weights = [cfg.aux_weight] * len(extras) if weights is None else weights
    if len(weights) != len(extras):
        raise TrainError(
            f"the model returned {len(extras)} extra outputs "
            f"in train mode but declares {len(weights)} heads"
        )
    loss = F.cross_entropy(main, y, label_smoothing=cfg.label_smoothing)
    for w, extra in zip(weights, extras, strict=True):
        if w:
            loss = loss + w * F.cross_entropy(extra, y, label_smoothing=cfg.label_smoothing)
    return main, loss


def fit(run: Run, resume_state: dict[str, Any] | None) -> Outcome:
    """Train run.model for the remaining epochs (and steps); return
    the per-epoch history and totals."""
    cfg, dist, feed, device = run.cfg, run.dist, run.feed, run.device
    global_batch = cfg.batch_size
    if global_batch % dist.world:
        raise TrainError(
            f"batch_size {global_batch} must be divisible by the {dist.world} processes"
        )
    local_batch = global_batch // dist.world
    steps = feed.steps(global_batch)
    model = run.model
    optimizer = make_optimizer(cfg, model.parameters())
    schedule = LrSchedule(cfg, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=run.autocast == torch.float16)
    outcome = Outcome()
    start_epoch, start_step, partial = 0, 0, None
    if resume_state is not None:
        start_epoch = _restore(resume_state, run, optimizer, schedule, scaler, outcome)
        start_step, partial = _mid_epoch(resume_state, steps)
        if dist.main:  # a kill between a checkpoint and its metrics left them an epoch behind
            write_metrics(run.out, outcome.history)
    step_model: nn.Module = model
    if dist.active:
        ids = [device.index] if device.type == "cuda" else None
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]
    amp = (
        (lambda: torch.autocast(device.type, dtype=run.autocast))
        if run.autocast is not None
        else contextlib.nullcontext
    )
    sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
    eval_batch = cfg.eval_batch_size or 2 * local_batch

    def state(epoch: int, step: int, sums: dict[str, float] | None) -> dict[str, Any]:
        """The checkpoint after `epoch` whole epochs and `step` steps of the next one."""
        return {
            "epoch": epoch,
            "step": step,
            "partial": sums,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "config": cfg.model_dump(mode="json"),
            "history": outcome.history,
            "best_test_acc": max(
                outcome.best_test_acc, 0.0
            ),  # -1 (none yet) in a step checkpoint of epoch 1
            "best_val_acc": outcome.best_val_acc,
            "best_epoch": outcome.best_epoch,
            "train_time_s": outcome.train_time_s,
            "images": outcome.images,
            "normalization": run.normalization,
            "spec": run.spec_info,
            "dataset": run.dataset_info,
            "data_path": feed.path,
            "memory_format": run.memory_format,
        }

    tensorboard = _tensorboard(run, outcome.history) if dist.main and cfg.tensorboard else None
    for epoch in range(start_epoch, cfg.epochs):
        if _patience_exhausted(cfg, outcome, epoch):
            break
        first = epoch == start_epoch and start_step > 0
        begin = start_step if first else 0
        run.reporter.start_epoch(epoch + 1, cfg.epochs, steps)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        bad = torch.zeros((), dtype=torch.int64, device=device)
        earlier_time = 0.0
        if (
            first and partial is not None and dist.main
        ):  # the sums of the steps before the checkpoint
            loss_sum += float(partial["loss_sum"])
            correct += int(partial["correct"])
        if first and partial is not None:
            earlier_time = float(partial["train_time_s"])
        lr = schedule.lr()
        started = time.perf_counter()
        for step, (x, y) in enumerate(
            feed.train_batches(epoch, begin, cfg.seed, global_batch), start=begin
        ):
            lr = schedule.apply(optimizer.param_groups)
            with amp():
                main, loss = objective(step_model(x), y, run.head_weights, cfg)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            detached = loss.detach()
            bad += (~torch.isfinite(detached)).long()
            loss_sum += detached.double() * local_batch
            correct += (main.detach().argmax(1) == y).sum()
            if (step + 1) % sync_every == 0 or step + 1 == steps:
                if int(all_reduce_sum(bad.clone(), dist)):
                    _diverged(run, epoch, step, steps, float(detached), outcome)
                seen = (step + 1 - begin) * local_batch
                elapsed = time.perf_counter() - started
                run.reporter.update(
                    step + 1,
                    float(loss_sum) / max(1, seen),
                    int(correct) / max(1, seen),
                    lr,
                    seen * dist.world / max(elapsed, 1e-9),
                )
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                sums = all_reduce_sum(torch.stack([loss_sum, correct.double()]), dist)
                if dist.main:
                    done = {
                        "loss_sum": float(sums[0]),
                        "correct": int(sums[1]),
                        "train_time_s": earlier_time + time.perf_counter() - started,
                    }
                    save_checkpoint(run.out / "last.pt", state(epoch, step + 1, done))
        train_time = earlier_time + time.perf_counter() - started
        totals = all_reduce_sum(torch.stack([loss_sum, correct.double()]), dist)
        images = steps * global_batch
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(totals[0]) / images,
            "train_acc": float(totals[1]) / images,
        }
        val = _evaluate(run, feed.val_batches(eval_batch)) if feed.val_images else None
        test = _evaluate(run, feed.test_batches(eval_batch))
        for split, result in (("val", val), ("test", test)):
            if result is not None:
                row |= {f"{split}_loss": result.loss, f"{split}_acc": result.accuracy}
                if result.top5 is not None:
                    row[f"{split}_top5"] = result.top5
        row |= {"lr": lr, "epoch_time_s": train_time, "images_per_s": images / train_time}
        outcome.history.append(row)
        outcome.train_time_s += train_time
        outcome.images += images
        # best.pt is chosen on validation accuracy (the first epoch reaching the best), never on
        # test; without a validation split every epoch replaces it, so it is the last
        improved = (
            val is None or outcome.best_val_acc is None or val.accuracy > outcome.best_val_acc
        )
        if improved:
            outcome.best_val_acc = val.accuracy if val is not None else None
            outcome.best_test_acc, outcome.best_epoch = test.accuracy, epoch + 1
        if dist.main:
            checkpoint = state(epoch + 1, 0, None)
            save_checkpoint(run.out / "last.pt", checkpoint)
            if improved:  # the same state: best.pt becomes a link to last.pt's file
                link_checkpoint(run.out / "last.pt", run.out / "best.pt")
            write_metrics(run.out, outcome.history)
            if tensorboard is not None:
                tensorboard.epoch(row)
            run.reporter.end_epoch(row, cfg.epochs)
    if tensorboard is not None:
        tensorboard.close()
    if (
        _patience_exhausted(cfg, outcome, len(outcome.history))
        and len(outcome.history) < cfg.epochs
    ):
        outcome.stopped_early = True
        run.reporter.message(
            "early stop: no better validation accuracy for "
            f"{cfg.patience} epochs after epoch {outcome.best_epoch}"
        )
    return outcome


def _evaluate(run: Run, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EvalResult:
    """One split's metrics, summed over the data-parallel ranks."""
    confusion, loss_sum, top5 = eval_batches(
        run.model, batches, run.feed.num_classes, run.autocast, run.device
    )
    for t in (confusion, loss_sum, top5):
        all_reduce_sum(t, run.dist)
    return EvalResult(confusion.cpu(), float(loss_sum), int(top5))


def _patience_exhausted(cfg: TrainConfig, outcome: Outcome, epochs_done: int) -> bool:
    """Early stopping: `patience` epochs have passed since the best validation accuracy."""
    return (
        cfg.patience is not None
        and outcome.best_epoch > 0
        and epochs_done - outcome.best_epoch >= cfg.patience
    )


def _tensorboard(run: Run, history: list[dict[str, Any]]) -> TensorBoardLog | None:
    from archc.trainer.tensorboard import TensorBoardLog

    return TensorBoardLog.open(run.out, history, run.reporter)


def _mid_epoch(state: dict[str, Any], steps: int) -> tuple[int, dict[str, Any] | None]:
    """(steps already trained in the checkpoint's unfinished epoch, their loss/accuracy sums)."""
    step, partial = state.get("step", 0), state.get("partial")
    if (
        not isinstance(step, int)
        or not 0 <= step < steps
        or (step and not isinstance(partial, dict))
    ):
        raise CheckpointError(
            f"the checkpoint's position (step {step} of "
            f"{steps}) does not fit this dataset and batch size"
        )
    return step, partial


def _restore(
    state: dict[str, Any],
    run: Run,
    optimizer: torch.optim.Optimizer,
    schedule: LrSchedule,
    scaler: torch.amp.GradScaler,
    outcome: Outcome,
) -> int:
    """Load a checkpoint's states into this run; returns the epochs it completed."""
    path = run.out / "last.pt"
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path} is damaged: its model entry is not a state_dict")
    check_compatible(run.model, state["model"], path)
    check_training_state(state, run.model, optimizer, path)
    try:
        run.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        outcome.history = [dict(row) for row in state["history"]]
        outcome.best_test_acc = float(state["best_test_acc"])
        best_val = state.get("best_val_acc")
        outcome.best_val_acc = None if best_val is None else float(best_val)
        outcome.best_epoch = int(state["best_epoch"])
        outcome.train_time_s = float(state["train_time_s"])
        outcome.images = int(state["images"])
        outcome.resumed_from = int(state["epoch"])
        set_rng_state(state["rng"])
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is damaged or from another run: {first}") from None
    return outcome.resumed_from


def _diverged(run: Run, epoch: int, step: int, steps: int, value: float, outcome: Outcome) -> None:
    kept = run.out / "last.pt"
    where = (
        f"kept {kept} (epoch {outcome.history[-1]['epoch']})"
        if outcome.history
        else "no checkpoint was written yet"
    )
    shown = value if not math.isfinite(value) else "non-finite on another process"
    raise DivergenceError(
        f"training diverged: the loss is {shown} at epoch {epoch + 1}, step "
        f"{step + 1}/{steps}; {where}; lower --lr, or add --warmup-epochs or --grad-clip"
    )
