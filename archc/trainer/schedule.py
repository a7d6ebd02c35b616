"""Learning-rate schedules as pure functions of the global step, stepped every iteration.

A pure function makes the scheduler's whole state one integer, so resuming restores it exactly.
"""

from __future__ import annotations

import math

from archc.compiler.train_config import TrainConfig

ONECYCLE_DIV = 25.0  # onecycle starts at lr / 25 ...
ONECYCLE_FINAL_DIV = 1e4  # ... and ends at lr / (25 * 1e4), torch's OneCycleLR defaults
ONECYCLE_PCT = 0.3


class LrSchedule:
    """Sets every param group's lr to base_lr * factor(step) before each optimizer step."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total = cfg.epochs * steps_per_epoch
        self.warmup = round(cfg.warmup_epochs * steps_per_epoch)
        self.step_count = 0

    def factor(self, step: int) -> float:
        """Multiplier of the base lr for 0-based iteration `step`."""
        cfg = self.cfg
        if cfg.schedule == "onecycle":
            return self._onecycle(step)
        epoch = step / self.steps_per_epoch
        if cfg.schedule == "step":
            f = cfg.gamma ** math.floor(epoch / cfg.step_size)
        elif cfg.schedule == "multistep":
            marks = [m * cfg.epochs if m < 1 else m for m in cfg.milestones]
            f = cfg.gamma ** sum(epoch >= m for m in marks)
        elif cfg.schedule == "cosine":
            span = max(1, self.total - self.warmup)
            progress = min(1.0, max(0, step - self.warmup) / span)
            f = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            f = 1.0
        if step < self.warmup:
            f *= (step + 1) / self.warmup
        return f

    def _onecycle(self, step: int) -> float:
        up = self.warmup or round(ONECYCLE_PCT * self.total)
        start, end = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        if step < up:
            t = step / max(1, up)
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * t))
        t = min(1.0, (step - up) / max(1, self.total - up))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))

    def lr(self, step: int | None = None) -> float:
        return self.cfg.lr * self.factor(self.step_count if step is None else step)

    def apply(self, param_groups: list[dict[str, object]]) -> float:
        """Set the lr for the coming step and advance; returns the lr used."""
        lr = self.lr()
        for group in param_groups:
            group["lr"] = lr
        self.step_count += 1
        return lr

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step"])
