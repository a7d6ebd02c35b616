"""Report columns as data (archc.analysis.report.COLUMNS) drawn by one
renderer per format; archc.summary."""

from __future__ import annotations

import csv
import io
import json

import pytest

import archc
from archc.analysis import report
from archc.api import compile_graph
from tests.conftest import REPO, TEST_SPECS, archc_here

RESNET18 = TEST_SPECS / "report_resnet18.yaml"
LENET = REPO / "specs" / "lenet5.yaml"


def test_adding_a_column_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = report.Column(
        "params_per_mac",
        "params/MAC",
        lambda r, t: round(r.params / r.macs, 3) if r.macs else None,
        lambda r, t: f"{r.params / r.macs:.3f}" if r.macs else "",
    )
    monkeypatch.setattr(report, "COLUMNS", (*report.COLUMNS, extra))
    graph = compile_graph(LENET)
    rows, tot = report.report_rows(graph), report.totals(graph)
    chosen = ["name", "params", "params_per_mac"]
    assert "params/MAC" in report.render(rows, tot, "table", columns=chosen).splitlines()[1]
    assert "| params/MAC |" in report.render(rows, tot, "markdown", columns=chosen)
    assert "<th>params/MAC</th>" in report.render(rows, tot, "html", columns=chosen)
    parsed = list(csv.DictReader(io.StringIO(report.render(rows, tot, "csv"))))
    assert "params_per_mac" in parsed[0]
    data = json.loads(report.render(rows, tot, "json"))
    conv1 = next(r for r in data["rows"] if r["name"] == "layer1.conv1")
    assert conv1["params_per_mac"] == round(156 / (6 * 28 * 28 * 25), 3)


def test_every_format_has_one_renderer_over_the_same_columns() -> None:
    assert (
        set(report.RENDERERS) == set(report.FORMATS) == {"table", "markdown", "csv", "json", "html"}
    )
    graph = compile_graph(RESNET18)
    rows, tot = report.report_rows(graph, depth=2), report.totals(graph)
    names = [r.name for r in rows]
    html = report.render(rows, tot, "html")
    assert html.count("<tr") == len(rows) + 1 and 'class="block"' in html
    assert [
        r["name"] for r in csv.DictReader(io.StringIO(report.render(rows, tot, "csv")))
    ] == names
    assert [r["name"] for r in json.loads(report.render(rows, tot, "json"))["rows"]] == names


def test_markdown_shows_full_layer_paths() -> None:
    graph = compile_graph(RESNET18)
    md = report.render(report.report_rows(graph), report.totals(graph), "markdown")
    assert (
        "| layer1.0.conv1 |" in md and "| layer2.0.conv1 |" in md
    )  # not two rows both reading `conv1`


def test_column_selection_on_the_command_line(tmp_path) -> None:
    done = archc_here("report", str(LENET), "--columns", "name,output,params")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[1].split()
    assert header == ["layer", "output", "params"]
    done = archc_here("report", str(LENET), "--format", "csv", "--columns", "params,name")
    assert done.stdout.splitlines()[0] == "params,name"
    done = archc_here("build", str(LENET), "--columns", "name,params")
    assert done.returncode == 0 and done.stdout.splitlines()[1].split() == ["layer", "params"]


def test_build_and_report_print_the_same_table() -> None:
    built = archc_here("build", str(LENET))
    assert built.returncode == 0, built.stderr
    assert built.stdout == archc_here("report", str(LENET)).stdout


def test_summary_prints_the_table_and_repr_is_one_line() -> None:
    analysis = (
        archc.summary(TEST_SPECS / "report_resnet50.yaml")
        if (TEST_SPECS / "report_resnet50.yaml").exists()
        else archc.summary(REPO / "specs" / "resnet50.yaml")
    )
    line = repr(analysis)
    assert "\n" not in line and len(line) < 200 and "25.6M params" in line and "4.09G MACs" in line
    table = str(archc.summary(LENET, columns=["name", "output", "params"], depth=1))
    assert table.splitlines()[1].split() == ["layer", "output", "params"]
    assert "layer1" in table and "conv1" not in table  # folded at depth 1
    assert "<table" in analysis._repr_html_()


def test_summary_of_a_built_model_is_its_specs() -> None:
    model = archc.build(LENET, num_classes=7)
    assert str(archc.summary(model)) == str(archc.summary(LENET, num_classes=7))


def test_summary_refuses_what_it_cannot_read() -> None:
    from torch import nn

    with pytest.raises(
        archc.ArchcError, match="give a spec or a model built by archc, not a Linear"
    ):
        archc.summary(nn.Linear(2, 2))
    with pytest.raises(
        archc.ArchcError, match="unknown column 'parms' \\(did you mean 'params'\\?\\)"
    ):
        archc.summary(LENET, columns=["parms"])
