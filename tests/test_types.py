"""What `make lint` checks holds in CI too: mypy (configured in pyproject.toml) reports no errors,
so annotations stay true as the code changes, and the tree is ruff-formatted and ruff-clean
(line length 100 enforced)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO, clean_env


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install -e '.[dev]' to type-check)",
)
def test_mypy_reports_no_errors() -> None:
    # mypy's cache lives in the repository root (.mypy_cache), so a repeated run checks only changes
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=600,
        check=False,
    )
    errors = [
        line for line in result.stdout.splitlines() if ": error:" in line or ": note:" in line
    ]
    assert result.returncode == 0, f"mypy exited {result.returncode}:\n" + "\n".join(
        errors or [result.stdout, result.stderr]
    )
    assert "Success: no issues found" in result.stdout, result.stdout


LINTED = ["archc", "tests", "benchmarks", "examples", "scripts"]


@pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason="ruff is not installed (pip install -e '.[dev]' to lint)",
)
@pytest.mark.parametrize("check", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff_is_clean(check: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *check, *LINTED],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
