"""Plots of a set of runs, as PNG and SVG: learning curves, accuracy
vs parameters, accuracy vs time.

Rows are the groups of results.py (a model or grid point; the line or point is the mean over its
seeds, the band or error bar one standard deviation). Figures are drawn with matplotlib's object
API, so no pyplot state or GUI backend is touched, and SVGs are reproducible (fixed ids, no date).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.experiments.grid import MODEL, format_value
from archc.experiments.results import Group, RunResult, group_runs, label_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

PLOTS = ("curves", "acc_vs_params", "acc_vs_time")
SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}  # no dates or URLs
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "archc",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
LOG_SCALE_RATIO = 50.0  # a loss axis spanning more than this factor is drawn in log scale
ANNOTATE_MAX = 6  # label points in place up to this many rows, else with a legend
FEW_EPOCHS = 12  # curves this short get one x tick per epoch


def group_name(group: Group, columns: list[str]) -> str:
    """Legend text: the model name alone, else key=value pairs."""
    parts = []
    for key in columns:
        value = group.label.get(key)
        if value is None and key == MODEL and group.runs and group.runs[0].record:
            value = group.runs[0].record["spec"]["name"]
        parts.append(format_value(value) if key == MODEL else f"{key}={format_value(value)}")
    return ", ".join(parts)


def figures(runs: list[RunResult]) -> list[tuple[str, Figure]]:
    """(name, matplotlib Figure) for the plots in PLOTS that say something; draw inside
    matplotlib.rc_context(RC). The trade-off scatters need two finished points: a single run's
    page shows its curves only."""
    groups = group_runs(runs)
    columns = label_columns([g.label for g in groups])
    names = [group_name(g, columns) for g in groups]
    plots = [("curves", _curves(groups, names))]
    finished = [g for g in groups if g.stat("test_acc").mean is not None]
    if len(finished) >= 2:
        plots += [
            ("acc_vs_params", _acc_vs_params(groups, names)),
            ("acc_vs_time", _acc_vs_time(groups, names)),
        ]
    return plots


def write_plots(runs: list[RunResult], dest: Path) -> list[Path]:
    """Draw the figures into dest as NAME.png and NAME.svg; returns the files written."""
    import matplotlib

    files: list[Path] = []
    with matplotlib.rc_context(RC):
        drawn = figures(runs)
        for stale in set(PLOTS) - {
            name for name, _ in drawn
        }:  # from an earlier write with more results
            for suffix in (".png", ".svg"):
                (dest / f"{stale}{suffix}").unlink(missing_ok=True)
        for name, fig in drawn:
            for suffix, options in ((".png", {"dpi": 120}), (".svg", {"metadata": SVG_METADATA})):
                path = dest / f"{name}{suffix}"
                tmp = path.with_name(f".{path.name}.tmp")
                fig.savefig(tmp, format=suffix[1:], **options)
                tmp.replace(path)
                files.append(path)
    return files


def svg_texts(runs: list[RunResult]) -> dict[str, str]:
    """The figures as SVG text, for pages that inline them."""
    import io

    import matplotlib

    texts = {}
    with matplotlib.rc_context(RC):
        for name, fig in figures(runs):
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg", metadata=SVG_METADATA)
            texts[name] = buffer.getvalue()
    return texts


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colour(i: int, n: int) -> tuple[float, float, float, float]:
    """Distinct colours for up to 20 rows (tab10, then tab20), cycling beyond."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return cmap(i % cmap.N)


def _mean_curve(group: Group, key: str) -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean, std) over the group's runs, up to the epoch all of them reached."""
    series = [
        [row[key] for row in r.history if isinstance(row.get(key), (int, float))]
        for r in group.runs
        if r.history
    ]
    series = [s for s in series if s]
    if not series:
        return [], [], []
    n = min(len(s) for s in series)
    means, stds = [], []
    for e in range(n):
        values = [s[e] for s in series]
        mean = sum(values) / len(values)
        means.append(mean)
        stds.append(
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else 0.0
        )
    return list(range(1, n + 1)), means, stds


def _curves(groups: list[Group], names: list[str]) -> Figure:
    fig = _figure(10, 4.2)
    acc_ax, loss_ax = fig.subplots(1, 2)
    losses: list[float] = []
    for i, (group, name) in enumerate(zip(groups, names, strict=True)):
        style = "-" if any(r.status == "done" for r in group.runs) else "--"
        for ax, key, scale in ((acc_ax, "test_acc", 100.0), (loss_ax, "train_loss", 1.0)):
            epochs, mean, std = _mean_curve(group, key)
            if not epochs:
                continue
            mean = [m * scale for m in mean]
            std = [s * scale for s in std]
            ax.plot(
                epochs,
                mean,
                style,
                color=_colour(i, len(groups)),
                label=name if ax is acc_ax else None,
                marker="." if len(epochs) < 30 else None,
            )
            if any(std):
                ax.fill_between(
                    epochs,
                    [m - s for m, s in zip(mean, std, strict=True)],
                    [m + s for m, s in zip(mean, std, strict=True)],
                    color=_colour(i, len(groups)),
                    alpha=0.15,
                    linewidth=0,
                )
            if key == "train_loss":
                losses += [m for m in mean if math.isfinite(m)]
    from matplotlib.ticker import MaxNLocator

    epochs_drawn = max(
        (len(line.get_xdata()) for ax in (acc_ax, loss_ax) for line in ax.get_lines()), default=0
    )
    for ax in (acc_ax, loss_ax):
        if 0 < epochs_drawn <= FEW_EPOCHS:  # one tick per epoch, the points not on the frame's edge
            ax.set_xticks(range(1, epochs_drawn + 1))
            ax.set_xlim(0.5, epochs_drawn + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="train loss")
    if losses and min(losses) > 0 and max(losses) / min(losses) > LOG_SCALE_RATIO:
        loss_ax.set_yscale("log")
    if any(
        line.get_label() and not line.get_label().startswith("_") for line in acc_ax.get_lines()
    ):
        fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    else:
        acc_ax.text(
            0.5, 0.5, "no finished epochs yet", ha="center", va="center", transform=acc_ax.transAxes
        )
    return fig


def _scatter(
    groups: list[Group], names: list[str], x_key: str, xlabel: str, title: str, log_x: bool
) -> Figure:
    fig = _figure(7.5, 4.4)
    ax = fig.subplots()
    points: list[tuple[float, float, str]] = []
    for i, (group, name) in enumerate(zip(groups, names, strict=True)):
        x, y = group.stat(x_key), group.stat("test_acc")
        if x.mean is None or y.mean is None:
            continue
        ax.errorbar(
            [x.mean],
            [y.mean],
            xerr=[x.std] if x.std else None,
            yerr=[y.std] if y.std else None,
            fmt="o",
            color=_colour(i, len(groups)),
            capsize=3,
            label=name,
        )
        points.append((x.mean, y.mean, name))
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    if not points:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
        return fig
    if len(points) <= ANNOTATE_MAX:
        for x_value, y_value, name in points:
            ax.annotate(
                name, (x_value, y_value), textcoords="offset points", xytext=(5, 4), fontsize=7
            )
    else:
        fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    xs = [p[0] for p in points]
    if log_x and min(xs) > 0 and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    return fig


def _acc_vs_params(groups: list[Group], names: list[str]) -> Figure:
    return _scatter(
        groups, names, "params_k", "parameters (thousands)", "test accuracy vs parameters", True
    )


def _acc_vs_time(groups: list[Group], names: list[str]) -> Figure:
    return _scatter(
        groups, names, "train_time_s", "train time (s)", "test accuracy vs train time", True
    )
