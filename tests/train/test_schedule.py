"""Learning-rate schedules: per-iteration values, warmup, and exact state round trips."""

from __future__ import annotations

import itertools
import math

import pytest

from archc.compiler.train_config import TrainConfig
from archc.trainer.schedule import LrSchedule

STEPS = 10  # iterations per epoch


def lrs(**kw: object) -> list[float]:
    cfg = TrainConfig(lr=1.0, epochs=10, **kw)  # type: ignore[arg-type]
    schedule = LrSchedule(cfg, STEPS)
    return [schedule.lr(step) for step in range(cfg.epochs * STEPS)]


def test_none_is_constant() -> None:
    assert set(lrs(schedule="none")) == {1.0}


def test_cosine_decays_every_iteration_to_near_zero() -> None:
    values = lrs(schedule="cosine")
    assert values[0] == 1.0 and values[50] == pytest.approx(0.5)
    assert all(a > b for a, b in itertools.pairwise(values))
    assert values[-1] < 1e-3


def test_linear_warmup_then_cosine() -> None:
    values = lrs(schedule="cosine", warmup_epochs=2)
    assert values[:20] == pytest.approx([(i + 1) / 20 for i in range(20)])
    assert values[20] == 1.0 and values[-1] < 1e-3


def test_step_decays_at_epoch_boundaries() -> None:
    values = lrs(schedule="step", step_size=3, gamma=0.5)
    assert (values[29], values[30], values[60], values[90]) == (1.0, 0.5, 0.25, 0.125)


def test_multistep_fractions_and_epochs() -> None:
    assert lrs(schedule="multistep", milestones=[0.5, 0.8], gamma=0.1)[49:51] == pytest.approx(
        [1.0, 0.1]
    )
    assert lrs(schedule="multistep", milestones=[2, 4], gamma=0.1)[39:41] == pytest.approx(
        [0.1, 0.01]
    )


def test_onecycle_ramps_up_then_anneals() -> None:
    values = lrs(schedule="onecycle")
    peak = values.index(max(values))
    assert values[0] == pytest.approx(1 / 25) and peak == 30 and values[peak] == pytest.approx(1.0)
    assert values[-1] < 1e-3 and math.isclose(max(values), 1.0)


def test_apply_sets_groups_and_state_round_trips() -> None:
    cfg = TrainConfig(lr=0.1, epochs=2, schedule="cosine", warmup_epochs=0.5)
    a = LrSchedule(cfg, STEPS)
    groups: list[dict[str, object]] = [{"lr": 0.0}, {"lr": 0.0}]
    used = [a.apply(groups) for _ in range(7)]
    assert groups[0]["lr"] == groups[1]["lr"] == used[-1]
    b = LrSchedule(cfg, STEPS)
    b.load_state_dict(a.state_dict())
    assert [b.apply(groups) for _ in range(5)] == [a.apply(groups) for _ in range(5)]
