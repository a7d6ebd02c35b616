"""Results of a set of runs: one row per model or grid point, mean ± std over seeds.

Runs that differ only in their seed form a group; a group's figures are the mean and sample
standard deviation over its finished runs. The same rows render as a terminal table, markdown,
CSV and JSON; `write_all` writes results.md, results.csv, runs.csv and the plots.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.experiments.errors import ExperimentError
from archc.experiments.files import write_file
from archc.experiments.grid import MODEL, SEED, format_value
from archc.experiments.manifest import read_manifest
from archc.experiments.rundir import read_history, read_state

FORMATS = ("table", "markdown", "csv", "json")
# (key, column title, how a value is shown): the per-group figures, in table order.
METRICS = (
    ("params_k", "params (k)", "{:.1f}"),
    ("epochs", "epochs", "{:.0f}"),  # shown without a spread: it is a setting, not a measurement
    ("train_loss", "train loss", "{:.4f}"),
    ("test_acc", "test acc (%)", "{:.2f}"),
    ("best_acc", "best acc (%)", "{:.2f}"),
    ("train_time_s", "train time (s)", "{:.1f}"),
    ("memory_mb", "peak mem (MB)", "{:.0f}"),
)
SETTINGS = ("params_k", "epochs")  # figures a row's runs share; shown once, not as mean ± std
NOTES = (
    "test acc: test accuracy after the last epoch; best acc: the "
    "best epoch's; train loss: mean training loss of the last epoch",
    "train time: seconds in training steps (evaluation excluded); peak mem: the run's peak memory "
    "(process peak RSS on CPU, torch.cuda.max_memory_allocated on a GPU), MB = 10^6 bytes",
    "a ± b: mean and sample standard deviation over the finished runs of a row (one per seed)",
)


@dataclass
class RunResult:
    """One run: what identifies it, its status, and its result record and per-epoch history."""

    id: str
    dir: Path
    values: dict[str, Any]
    status: str
    error: str | None = None
    record: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    static_params: int | None = None

    def metric(self, key: str) -> float | None:
        """A figure of a finished run (params also for others), None when it has none."""
        rec = self.record or {}
        if key == "params_k":
            params = rec.get("params", self.static_params)
            return None if params is None else params / 1000
        if self.status != "done":
            return None
        value = {
            "epochs": rec.get("epochs_completed"),
            "train_loss": rec.get("final_train_loss"),
            "test_acc": None if rec.get("final_test_acc") is None else 100 * rec["final_test_acc"],
            "best_acc": None if rec.get("best_test_acc") is None else 100 * rec["best_test_acc"],
            "train_time_s": rec.get("train_time_s"),
            "memory_mb": None
            if rec.get("peak_memory_bytes") is None
            else rec["peak_memory_bytes"] / 1e6,
            "macs_m": None if rec.get("macs") is None else rec["macs"] / 1e6,
            "images_per_s": rec.get("images_per_s"),
            "wall_time_s": rec.get("wall_time_s"),
        }[key]
        return None if value is None or not math.isfinite(float(value)) else float(value)

    @property
    def seed(self) -> int | None:
        return self.values.get(SEED, (self.record or {}).get("seed"))


@dataclass
class Stat:
    """Mean and sample standard deviation of n values (std None for n < 2)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        n = len(values)
        if n == 0:
            return cls(None, None, 0)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return cls(mean, std, n)

    def text(self, fmt: str) -> str:
        if self.mean is None:
            return "—"
        if self.std is None:
            return fmt.format(self.mean)
        return f"{fmt.format(self.mean)} ± {fmt.format(self.std)}"


@dataclass
class Group:
    """The runs of one model or grid point (all seeds)."""

    label: dict[str, Any]
    runs: list[RunResult]

    def stat(self, key: str) -> Stat:
        if key in SETTINGS:  # identical across seeds (params: shown for unfinished runs too)
            values = [v for r in self.runs if (v := r.metric(key)) is not None]
            return Stat(values[0], None, len(values)) if len(set(values)) == 1 else Stat.of(values)
        return Stat.of([v for r in self.runs if (v := r.metric(key)) is not None])

    def status_text(self) -> str:
        done = sum(1 for r in self.runs if r.status == "done")
        others: dict[str, int] = {}
        for r in self.runs:
            if r.status != "done":
                others[r.status] = others.get(r.status, 0) + 1
        if not others:
            return str(done)
        return f"{done}/{len(self.runs)} (" + ", ".join(f"{n} {s}" for s, n in others.items()) + ")"


def group_runs(runs: list[RunResult]) -> list[Group]:
    """Runs grouped by everything but their seed, in order of first appearance."""
    groups: dict[str, Group] = {}
    for run in runs:
        label = {k: v for k, v in run.values.items() if k != SEED}
        key = json.dumps(label, sort_keys=True, default=str)
        groups.setdefault(key, Group(label, [])).runs.append(run)
    return list(groups.values())


def label_columns(items: list[dict[str, Any]]) -> list[str]:
    """The label keys whose values differ between rows (the model name when nothing does)."""
    keys: list[str] = []
    for item in items:
        keys += [k for k in item if k not in keys and k != SEED]
    varying = [
        k
        for k in keys
        if len({json.dumps(i.get(k), sort_keys=True, default=str) for i in items}) > 1
    ]
    if varying:
        return varying
    return [MODEL] if any(MODEL in i for i in items) else keys[:1] or [MODEL]


def group_label(group: Group, key: str) -> str:
    if key in group.label:
        return format_value(group.label[key])
    if key == MODEL and group.runs and group.runs[0].record:
        return str(group.runs[0].record["spec"]["name"])
    return "—"


# loading ------------------------------------------------------------------------------------------
def load_run(
    run_dir: Path,
    values: dict[str, Any] | None = None,
    run_id: str | None = None,
    static_params: int | None = None,
) -> RunResult:
    """The run in run_dir (any status)."""
    state = read_state(run_dir)
    record = state.record
    if values is None:
        values = {MODEL: record["spec"]["name"]} if record else {}
        if record is not None:
            values[SEED] = record.get("seed")
    return RunResult(
        run_id or run_dir.name,
        run_dir,
        values,
        state.status,
        state.error,
        record,
        read_history(run_dir),
        static_params,
    )


def load_sweep(out: Path) -> list[RunResult]:
    """Every run a sweep manifest lists, read from its directory, in manifest order."""
    manifest = read_manifest(out)
    if manifest is None:
        raise ExperimentError(f"{out} holds no sweep (no sweep.json)")
    runs = []
    for entry in manifest["runs"]:
        run = load_run(out / entry["id"], dict(entry["values"]), entry["id"], entry.get("params"))
        if MODEL not in run.values:
            name = run.record["spec"]["name"] if run.record else Path(entry["spec"]).stem
            run.values = {MODEL: name, **run.values}
        if run.status == "running":  # a manifest left by a sweep that was killed
            run.status = read_state(run.dir).status
        runs.append(run)
    return runs


# rendering ----------------------------------------------------------------------------------------
def table_rows(runs: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the grouped table as display strings."""
    groups = group_runs(runs)
    columns = label_columns([g.label for g in groups])
    header = [*columns, "runs", *(title for _, title, _ in METRICS)]
    rows = [
        [
            *(group_label(g, c) for c in columns),
            g.status_text(),
            *(g.stat(k).text(f) for k, _, f in METRICS),
        ]
        for g in groups
    ]
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]], numeric: range) -> str:
    """A GitHub markdown table; columns whose index is in `numeric` are right-aligned."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "| " + " | ".join("---:" if i in numeric else "---" for i in range(len(header))) + " |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(runs: list[RunResult], fmt: str, width: int | None = None) -> str:
    """The grouped results in one of FORMATS."""
    if fmt == "json":
        return json.dumps(results_json(runs), indent=2) + "\n"
    if fmt == "csv":
        return results_csv(runs)
    header, rows = table_rows(runs)
    first_metric = header.index("runs")
    if fmt == "markdown":
        return markdown_table(header, rows, range(first_metric, len(header)))
    if fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table(pad_edge=False)
        for i, title in enumerate(header):
            table.add_column(title, justify="right" if i >= first_metric else "left")
        for row in rows:
            table.add_row(*row)
        buffer = io.StringIO()
        Console(
            file=buffer,
            width=width or 200,
            force_terminal=False,
            color_system=None,
            soft_wrap=False,
        ).print(table)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _csv_text(header: list[str], rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


CSV_METRICS = (
    "test_acc",
    "best_acc",
    "train_loss",
    "train_time_s",
    "memory_mb",
    "epochs",
    "images_per_s",
    "wall_time_s",
)


def results_csv(runs: list[RunResult]) -> str:
    """One row per group: its labels, run counts, params, and mean/std of each figure."""
    groups = group_runs(runs)
    columns = label_columns([g.label for g in groups])
    header = [*columns, "runs", "done", "diverged", "failed", "unfinished", "params", "macs"]
    for key in CSV_METRICS:
        header += [f"{key}_mean", f"{key}_std"]
    header.append("run_ids")
    rows = []
    for g in groups:
        counts = {
            s: sum(1 for r in g.runs if r.status == s) for s in ("done", "diverged", "failed")
        }
        first = next((r.record for r in g.runs if r.record), None) or {}
        params = first.get("params", g.runs[0].static_params)
        row: list[object] = [
            *(_csv_label(g.label.get(c)) if c in g.label else group_label(g, c) for c in columns),
            len(g.runs),
            counts["done"],
            counts["diverged"],
            counts["failed"],
            len(g.runs) - sum(counts.values()),
            params,
            first.get("macs"),
        ]
        for key in CSV_METRICS:
            stat = Stat.of([v for r in g.runs if (v := r.metric(key)) is not None])
            row += [_num(stat.mean), _num(stat.std)]
        row.append(" ".join(r.id for r in g.runs))
        rows.append(row)
    return _csv_text(header, rows)


def runs_csv(runs: list[RunResult]) -> str:
    """One row per run, failed and unfinished ones included, with the error text."""
    columns = label_columns([{k: v for k, v in r.values.items()} for r in runs]) if runs else []
    header = [
        "id",
        *columns,
        "seed",
        "status",
        "params",
        "epochs",
        "final_test_acc",
        "best_test_acc",
        "final_train_loss",
        "train_time_s",
        "wall_time_s",
        "peak_memory_mb",
        "images_per_s",
        "error",
        "dir",
    ]
    rows = []
    for r in runs:
        rec = r.record or {}
        rows.append(
            [
                r.id,
                *(_csv_label(r.values.get(c)) for c in columns),
                r.seed,
                r.status,
                rec.get("params", r.static_params),
                rec.get("epochs_completed"),
                _num(rec.get("final_test_acc")),
                _num(rec.get("best_test_acc")),
                _num(rec.get("final_train_loss")),
                _num(rec.get("train_time_s")),
                _num(rec.get("wall_time_s")),
                _num(r.metric("memory_mb")),
                _num(rec.get("images_per_s")),
                r.error,
                str(r.dir),
            ]
        )
    return _csv_text(header, rows)


def _csv_label(value: object) -> str:
    return "" if value is None else format_value(value)


def _num(value: float | str | None) -> str | None:
    if value is None:
        return None
    return f"{float(value):.6g}"


def results_json(runs: list[RunResult]) -> dict[str, Any]:
    groups = group_runs(runs)
    return {
        "groups": [
            {
                "label": g.label,
                "runs": [r.id for r in g.runs],
                "status": g.status_text(),
                **{key: _stat_json(g.stat(key)) for key, _, _ in METRICS},
            }
            for g in groups
        ],
        "runs": [
            {
                "id": r.id,
                "values": r.values,
                "status": r.status,
                "error": r.error,
                "dir": str(r.dir),
                "record": r.record,
            }
            for r in runs
        ],
    }


def _stat_json(stat: Stat) -> dict[str, Any]:
    return {"mean": stat.mean, "std": stat.std, "n": stat.n}


def describe(runs: list[RunResult]) -> str:
    """One line on what the runs were trained on and with what: dataset, device, torch."""
    rec = next((r.record for r in runs if r.status == "done" and r.record), None)
    if rec is None:
        return ""
    data = rec.get("dataset", {})
    shape = "x".join(str(d) for d in data.get("input_shape", []))
    versions = rec.get("versions", {})
    return (
        f"{data.get('name')}: {data.get('train_images')} train / {data.get('test_images')} "
        f"test images at {shape}; {rec.get('device_name') or rec.get('device')} "
        f"({rec.get('device')}); torch {versions.get('torch')}, archc {versions.get('archc')}"
    )


def runs_markdown(runs: list[RunResult]) -> str:
    header = ["run", "status", "test acc (%)", "train loss", "train time (s)", "note"]
    rows = []
    for r in runs:
        acc, loss, secs = r.metric("test_acc"), r.metric("train_loss"), r.metric("train_time_s")
        rows.append(
            [
                r.id,
                r.status,
                "—" if acc is None else f"{acc:.2f}",
                "—" if loss is None else f"{loss:.4f}",
                "—" if secs is None else f"{secs:.1f}",
                (r.error or "").splitlines()[0][:160] if r.error else "",
            ]
        )
    return markdown_table(header, rows, range(2, 5))


def results_markdown(runs: list[RunResult], title: str, plots: list[Path]) -> str:
    header, rows = table_rows(runs)
    parts = [f"# {title}\n", markdown_table(header, rows, range(header.index("runs"), len(header)))]
    about = describe(runs)
    parts.append("\n".join(f"- {line}" for line in ([about] if about else []) + list(NOTES)) + "\n")
    names = {p.stem for p in plots if p.suffix == ".png"}
    captions = {
        "curves": "test accuracy and train loss per epoch",
        "acc_vs_params": "test accuracy vs parameters",
        "acc_vs_time": "test accuracy vs train time",
    }
    parts += [f"![{captions[n]}]({n}.png)\n" for n in captions if n in names]
    parts += ["## Runs\n", runs_markdown(runs)]
    return "\n".join(parts)


def default_title(runs: list[RunResult]) -> str:
    names = list(
        dict.fromkeys(
            str(r.values.get(MODEL) or (r.record or {}).get("spec", {}).get("name", r.id))
            for r in runs
        )
    )
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"Results: {shown}"


def write_all(runs: list[RunResult], dest: Path, title: str | None = None) -> list[Path]:
    """results.md, results.csv, runs.csv and the plots (PNG and SVG) in dest; returns the files."""
    from archc.experiments.plots import write_plots

    dest.mkdir(parents=True, exist_ok=True)
    plots = write_plots(runs, dest)
    files = []
    for name, text in (
        ("results.md", results_markdown(runs, title or default_title(runs), plots)),
        ("results.csv", results_csv(runs)),
        ("runs.csv", runs_csv(runs)),
    ):
        files.append(write_file(dest / name, text))
    return files + plots
