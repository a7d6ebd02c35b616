"""Shared helpers for the robustness suite: hostile specs, resource
limits, faults in training runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from archc.errors import SpecError

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"


def yaml_str(value: str) -> str:
    """A YAML double-quoted scalar holding exactly `value` (JSON strings are valid YAML)."""
    return json.dumps(value)


def assert_positioned(exc: SpecError, text: str | None = None) -> None:
    """A SpecError points at a real line and column of its source."""
    assert exc.pos is not None and exc.line is not None and exc.col is not None, (
        f"no position: {exc!r}"
    )
    assert exc.pos.source.line(exc.line) is not None, exc.render()
    if text is not None:
        assert exc.line <= max(1, len(text.splitlines())), exc.render()


def spec_error(fn: Any, *args: Any, **kwargs: Any) -> SpecError:
    """Call fn and return the SpecError it raises (failing the test if it does not)."""
    try:
        fn(*args, **kwargs)
    except SpecError as exc:
        return exc
    raise AssertionError(f"{getattr(fn, '__name__', fn)} accepted the input")


def note(line: str) -> None:
    """Print a figure for the report (seen with -s) and append it to $ARCHC_ROBUSTNESS_LOG if set.

    pytest-xdist swallows workers' output, so the log file is how a parallel run's figures are kept.
    """
    print(line)
    target = os.environ.get("ARCHC_ROBUSTNESS_LOG")
    if target:
        with open(target, "a") as fh:
            fh.write(line + "\n")
