"""Stage 1, load: the parse cache hands out fresh data with the caller's positions; YAML's
reusable anchors load quietly."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from archc.cli import main
from archc.compiler.loader import LDict, load_text, position_of

SPEC = "input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3}\n  - relu\n"


def test_a_text_loaded_twice_gives_fresh_data_positioned_in_each_source() -> None:
    first = load_text(SPEC, "a.yaml")
    first.data["layers"].append("mutated")
    first.data["layers"][0]["conv"]["out"] = 99
    second = load_text(SPEC, "b.yaml")
    assert second.data == {
        "input": [3, 8, 8],
        "layers": [{"conv": {"out": 4, "kernel": 3}}, "relu"],
    }
    conv = second.data["layers"][0]
    assert isinstance(conv, LDict)
    pos = position_of(conv, "conv")
    assert pos is not None and (pos.source.path, pos.line) == ("b.yaml", 3)


def test_a_reused_anchor_loads_quietly_and_aliases_read_the_last_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML lets a document define an anchor name again; ruamel warns on stderr, archc does not."""
    text = (
        "input: [3, 8, 8]\nlayers:\n  - conv: &c {out: 4, kernel: 3}\n  - relu\n"
        "  - conv: &c {out: 6, kernel: 1}\n  - conv: *c\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = load_text(text, "anchors.yaml")
    assert doc.data["layers"][3] == {"conv": {"out": 6, "kernel": 1}}
    path = tmp_path / "anchors2.yaml"  # another text: the CLI parses it afresh
    path.write_text(text.replace("out: 4", "out: 5"))
    assert main(["check", str(path)]) == 0
    assert "Warning" not in capsys.readouterr().err
