"""Experiments: sweeps over training options and spec parameters,
comparisons, result tables, plots, HTML.

    from archc.experiments import sweep, compare, Variant
    sweep("specs/lenet5.yaml", {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1]}, out="runs/grid",
          dataset="digits", resize=32, epochs=3)

Each run trains in its own process under OUT/<run-id>/; OUT/sweep.json records the sweep, and
OUT/results.md, results.csv, runs.csv and the plots summarise it (mean ± std over seeds). Calling
again with the same arguments resumes: finished runs are skipped, interrupted ones continue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archc.experiments.compare import collect_runs, spec_variants
from archc.experiments.errors import ExperimentError
from archc.experiments.grid import Axis, parse_axis
from archc.experiments.plan import SweepPlan, Variant, make_plan
from archc.experiments.sweep import Echo, SweepOutcome, echo_stderr, run_sweep


def grid_axes(grid: Mapping[str, Sequence[object]] | Sequence[str] | None) -> list[Axis]:
    """Axes from {"lr": [0.01, 0.1]} or from command-line style ["lr=0.01,0.1"]."""
    from archc.experiments.grid import normalize_key

    if grid is None:
        return []
    if isinstance(grid, Mapping):
        axes = []
        for key, values in grid.items():
            values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
            if not values:
                raise ExperimentError(f"grid key {key} has no values")
            axes.append(Axis(normalize_key(key), values))
        return axes
    return [parse_axis(item) for item in grid]


def _seed_list(seeds: int | Sequence[int] | None, config: dict[str, Any]) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, int):
        if seeds < 1:
            raise ExperimentError(f"seeds must be at least 1, got {seeds}")
        first = int(config.pop("seed", 0))
        return list(range(first, first + seeds))
    return [int(s) for s in seeds]


def sweep(
    spec: str | Path | None = None,
    grid: Mapping[str, Sequence[object]] | Sequence[str] | None = None,
    *,
    out: str | Path,
    variants: Sequence[Variant] | None = None,
    seeds: int | Sequence[int] | None = None,
    jobs: int = 1,
    retry_failed: bool = False,
    spec_overrides: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | None = None,
    echo: Echo = echo_stderr,
    **config: Any,
) -> SweepOutcome:
    """Train the grid's cartesian product (times variants and seeds); keyword
    arguments are TrainConfig fields.

    seeds: a count (seeds seed, seed+1, ...) or a list. variants: models to compare (then spec is
    None). Raises ExperimentError or SpecError on bad input before anything trains.
    """
    if (spec is None) == (variants is None):
        raise ExperimentError("give either a spec or variants")
    chosen = list(variants) if variants is not None else [Variant(Path(spec).stem, str(spec))]  # type: ignore[arg-type]
    seed_list = _seed_list(seeds, config)
    plan = make_plan(
        out,
        chosen,
        grid_axes(grid),
        seed_list,
        config,
        spec_overrides,
        plugins,
        input_shape,
        "compare" if variants is not None and len(chosen) > 1 else "sweep",
    )
    for note in plan.notes:
        echo(f"note: {note}")
    return run_sweep(plan, jobs=jobs, retry_failed=retry_failed, echo=echo)


def compare(specs: Sequence[str | Path], *, out: str | Path, **kwargs: Any) -> SweepOutcome:
    """Train each spec with the same options (see `sweep` for the keyword arguments)."""
    return sweep(variants=spec_variants([str(s) for s in specs]), out=out, **kwargs)


def write_html_report(run_or_sweep_dir: Path, out_html: Path) -> Path:
    """One self-contained HTML page for a run, a sweep or a folder of
    runs (see archc.experiments.html)."""
    from archc.experiments.html import write_html_report as write

    return write(Path(run_or_sweep_dir), Path(out_html))


def write_results(
    dirs: Sequence[str | Path], dest: str | Path, title: str | None = None
) -> list[Path]:
    """results.md, results.csv, runs.csv and plots for existing runs or sweeps, written to dest."""
    from archc.experiments.results import write_all

    return write_all(collect_runs(list(dirs)), Path(dest), title)


__all__ = [
    "ExperimentError",
    "SweepOutcome",
    "SweepPlan",
    "Variant",
    "collect_runs",
    "compare",
    "grid_axes",
    "make_plan",
    "run_sweep",
    "sweep",
    "write_html_report",
    "write_results",
]
