"""Acceptance: LeNet-5 on scikit-learn's digits with the spec's own
recipe reaches 95% test accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.trainer.api import train


@pytest.mark.slow
def test_lenet5_on_digits_reaches_95_percent(lenet5_spec: Path, tmp_path: Path) -> None:
    # The spec's train: section as is; one thread only because CI machines run tests side by side.
    record = train(lenet5_spec, out=str(tmp_path / "run"), log="quiet", workers=1)
    assert (
        record["config"]["dataset"] == "digits"
        and record["config"]["deterministic"]
        and record["seed"] == 0
    )
    assert record["epochs_completed"] == record["config"]["epochs"]
    assert record["final_test_acc"] >= 0.95, record["final_test_acc"]
