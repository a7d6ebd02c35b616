"""`archc report --html DIR` is wired to the experiments' HTML page writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.cli import main


def test_report_html_missing_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--html", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "nope" in err and "Traceback" not in err


def test_report_without_specs_or_html_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 1
    assert "give spec files, or --html DIR" in capsys.readouterr().err
