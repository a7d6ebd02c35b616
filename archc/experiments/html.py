"""One self-contained HTML page for a run or a sweep: diagram, per-layer table, curves, results.

Everything is inline (SVG diagram from archc.analysis.diagram, SVG plots, CSS), with no script and
no external resource, so the file can be mailed, archived or opened offline. IDs inside each inline
SVG get a unique prefix, so several SVGs on one page cannot capture each other's references.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.errors import SpecError
from archc.experiments.compare import collect_runs
from archc.experiments.errors import ExperimentError
from archc.experiments.files import write_file
from archc.experiments.manifest import read_manifest
from archc.experiments.results import (
    RunResult,
    describe,
    group_label,
    group_runs,
    label_columns,
    table_rows,
)
from archc.experiments.rundir import MANIFEST

if TYPE_CHECKING:
    from archc.compiler.ir import Graph
    from archc.experiments.results import Group

MAX_MODELS = 8  # distinct models drawn on one page; the rest are listed by name
TABLE_DEPTH = 2
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.block td{font-weight:600;background:#fafafa}
.plot svg,.diagram svg{max-width:100%;height:auto}
.diagram{overflow:auto;max-height:90vh;border:1px solid #eee;padding:.5rem}
.status-done{color:#1a7f37}.status-diverged,.status-failed{color:#b42318}.status-partial,.status-pending{color:#9a6700}
.note{color:#666;font-size:.85rem}
"""


@dataclass
class _Model:
    """A distinct model among the runs: its spec file, overrides and the input it trained on."""

    name: str
    spec: str  # a path that opens from here
    shown: str  # the path as the runs recorded it
    overrides: dict[str, Any]
    input_shape: tuple[int, ...] | None


def write_html_report(run_or_sweep_dir: Path, out_html: Path) -> Path:
    """Write the page for a run directory, a sweep directory or a
    folder of runs; returns out_html."""
    source = Path(run_or_sweep_dir)
    runs = collect_runs([source])
    if not runs:
        raise ExperimentError(f"{source} holds no runs")
    manifest = read_manifest(source) if (source / MANIFEST).is_file() else None
    plugins = tuple(manifest["definition"].get("plugins", ())) if manifest else ()
    kind = (
        {"sweep": "Sweep", "compare": "Comparison"}.get(manifest.get("kind", "sweep"))
        if manifest
        else None
    )
    title = f"{kind or ('Runs' if len(runs) > 1 else 'Run')} {source.resolve().name}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">{_e(describe(runs))}</p>' if describe(runs) else "",
        f'<p class="note">{_e(_counts(runs))}; generated '
        f"{_e(time.strftime('%Y-%m-%d %H:%M'))} from {_e(str(source))}</p>",
    ]
    body += ["<h2>Results</h2>", _results_table(runs), _runs_table(runs)]
    body += ["<h2>Curves and trade-offs</h2>", _plots(runs)]
    body += _models_section(_models(runs, manifest), plugins)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )
    out_html = Path(out_html)
    write_file(out_html, page)
    return out_html


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _counts(runs: list[RunResult]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " + ", ".join(
        f"{n} {s}" for s, n in counts.items()
    )


def _results_table(runs: list[RunResult]) -> str:
    header, rows = table_rows(runs)
    first = header.index("runs")
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(c)}</td>' if i >= first else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        '<table id="results"><caption>one row per model or grid point; '
        "mean ± sample std over seeds</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _runs_table(runs: list[RunResult]) -> str:
    columns = label_columns([r.values for r in runs])
    header = [
        "run",
        *columns,
        "seed",
        "status",
        "test acc (%)",
        "best acc (%)",
        "train loss",
        "train time (s)",
        "peak mem (MB)",
        "note",
    ]
    rows = []
    for r in runs:
        cells = [f"<td>{_e(r.id)}</td>"]
        cells += [f"<td>{_e(group_label(_single(r), c))}</td>" for c in columns]
        cells.append(f'<td class="num">{_e("—" if r.seed is None else r.seed)}</td>')
        cells.append(f'<td class="status-{_e(r.status)}">{_e(r.status)}</td>')
        for key, fmt in (
            ("test_acc", "{:.2f}"),
            ("best_acc", "{:.2f}"),
            ("train_loss", "{:.4f}"),
            ("train_time_s", "{:.1f}"),
            ("memory_mb", "{:.0f}"),
        ):
            value = r.metric(key)
            cells.append(f'<td class="num">{_e("—" if value is None else fmt.format(value))}</td>')
        cells.append(f"<td>{_e(r.error or '')}</td>")
        rows.append(f'<tr data-run="{_e(r.id)}">' + "".join(cells) + "</tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return (
        f'<table id="runs"><caption>one row per run</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _single(run: RunResult) -> Group:
    return group_runs([run])[0]


def _plots(runs: list[RunResult]) -> str:
    from archc.experiments.plots import svg_texts

    captions = {
        "curves": "test accuracy and train loss per epoch (mean over seeds, band: ± std)",
        "acc_vs_params": "final test accuracy vs parameters",
        "acc_vs_time": "final test accuracy vs train time",
    }
    parts = []
    for name, svg in svg_texts(runs).items():
        parts.append(
            f'<figure class="plot" id="plot-{name}">{inline_svg(svg, f"plot-{name}")}'
            f"<figcaption>{_e(captions.get(name, name))}</figcaption></figure>"
        )
    return "\n".join(parts)


def _models(runs: list[RunResult], manifest: dict[str, Any] | None) -> list[_Model]:
    """The distinct (spec, overrides, input) combinations of the runs, in order."""
    entries = {e["id"]: e for e in manifest["runs"]} if manifest else {}
    input_shape = manifest["definition"].get("input_shape") if manifest else None
    root = Path(manifest["cwd"]) if manifest and manifest.get("cwd") else None
    models: dict[str, _Model] = {}
    for r in runs:
        rec = r.record or {}
        entry = entries.get(r.id)
        spec = rec.get("spec", {}).get("path") or (entry or {}).get("spec")
        if not spec:
            continue
        overrides = rec.get("overrides", {}).get("spec") if rec else None
        if overrides is None:
            overrides = (entry or {}).get("set", {})
        shape = rec.get("dataset", {}).get("input_shape") or input_shape
        name = rec.get("spec", {}).get("name") or Path(spec).stem
        shown = spec
        if not Path(spec).is_file() and root is not None and (root / spec).is_file():
            spec = str(root / spec)  # relative to where the sweep ran
        if overrides:
            name += " (" + ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) + ")"
        key = json.dumps([spec, overrides, shape], sort_keys=True, default=str)
        models.setdefault(
            key, _Model(name, spec, shown, dict(overrides), tuple(shape) if shape else None)
        )
    return list(models.values())


def _models_section(models: list[_Model], plugins: tuple[str, ...]) -> list[str]:
    if not models:
        return []
    parts = ["<h2>Models</h2>"]
    for i, model in enumerate(models[:MAX_MODELS]):
        parts.append(
            f'<section class="model" id="model-{i}"><h3>{_e(model.name)}</h3>'
            f'<p class="note">{_e(model.shown)}'
            + (f", input {'x'.join(map(str, model.input_shape))}" if model.input_shape else "")
            + "</p>"
        )
        try:
            graph = _graph(model, plugins)
        except (SpecError, OSError, ValueError) as exc:
            parts.append(
                f'<p class="note">cannot compile {_e(model.shown)}: '
                f"{_e(str(exc).splitlines()[0])}</p></section>"
            )
            continue
        parts.append(_diagram(graph, f"diagram-{i}"))
        parts.append(_layer_table(graph))
        parts.append("</section>")
    if len(models) > MAX_MODELS:
        parts.append(
            f'<p class="note">not drawn: {_e(", ".join(m.name for m in models[MAX_MODELS:]))}</p>'
        )
    return parts


def _graph(model: _Model, plugins: tuple[str, ...]) -> Graph:
    from archc.api import compile_graph
    from archc.compiler.validate import load

    return compile_graph(load(model.spec, model.overrides, plugins), input_shape=model.input_shape)


def _diagram(graph: Graph, prefix: str) -> str:
    """The graphviz diagram as inline SVG, or a note saying why there is none."""
    from archc.analysis.diagram import DiagramError, GraphvizNotFound, fit_depth, render

    depth = fit_depth(graph)
    with tempfile.TemporaryDirectory(prefix="archc-html-") as tmp:
        path = Path(tmp) / "diagram.svg"
        try:
            render(graph, path, "svg", depth, "TB")
            svg = path.read_text()
        except GraphvizNotFound:
            return '<p class="note">no diagram: graphviz\'s <code>dot</code> is not installed</p>'
        except (DiagramError, OSError) as exc:
            return f'<p class="note">no diagram: {_e(exc)}</p>'
    return f'<div class="diagram" id="{prefix}">{inline_svg(svg, prefix)}</div>'


def _layer_table(graph: Graph) -> str:
    """The per-layer table of archc.analysis.report at TABLE_DEPTH, drawn by its HTML renderer."""
    from archc.analysis.report import layer_table, render_html, report_rows, si, totals
    from archc.ops.base import fmt_shape

    tot = totals(graph)
    table = layer_table(
        report_rows(graph, TABLE_DEPTH),
        tot,
        ["name", "op", "output", "params", "params_pct", "macs", "macs_pct"],
        fmt="html",
    )
    table.title = (
        f"{tot['params']:,} parameters, {si(tot['macs'])} MACs per image at input "
        f"{fmt_shape(tuple(tot['input']))}"
    )
    table.notes = []  # the page states the run's figures; the conventions are in docs/report.md
    return render_html(table)


_ID = re.compile(r'\bid="([^"]+)"')


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element for an HTML page: no XML prolog or doctype, ids prefixed."""
    start = svg.find("<svg")
    if start < 0:
        raise ExperimentError("not an SVG document")
    text = svg[start:]
    ids = set(_ID.findall(text))
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(
        r"url\(#([^)]+)\)",
        lambda m: f"url(#{prefix}-{m.group(1)})" if m.group(1) in ids else m.group(0),
        text,
    )
    text = re.sub(
        r'((?:xlink:)?href)="#([^"]+)"',
        lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"' if m.group(2) in ids else m.group(0),
        text,
    )
    return text
