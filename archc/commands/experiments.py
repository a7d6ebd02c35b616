"""`archc sweep`, `archc compare` and `archc html`: experiments from the command line.

The training flags are those of `archc train` (both generated from TrainConfig's fields, so the
two never drift apart), minus the ones a sweep manages itself (--out per run, --resume, --log).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.commands.common import (
    add_format_option,
    add_output_option,
    add_spec_options,
    positive_int,
)
from archc.experiments.errors import ExperimentError

if TYPE_CHECKING:
    from archc.experiments.grid import Axis
    from archc.experiments.plan import SweepPlan, Variant
    from archc.experiments.results import RunResult

MAX_DEFAULT_NAME = 80


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sweep`, `compare` and `html` subcommands."""
    sweep = subparsers.add_parser(
        "sweep",
        help="train the cartesian product of a grid of training options and spec parameters",
        description=(
            "Train SPEC at every point of the grid (x seeds), one run directory per "
            "point under --out, in --jobs parallel processes. Rerunning the same "
            "command resumes: finished runs are skipped, interrupted ones continue from "
            "their checkpoint. Writes OUT/sweep.json, OUT/results.md, OUT/results.csv, "
            "OUT/runs.csv and plots (PNG and SVG), and prints the results table."
        ),
        epilog="example: archc sweep specs/lenet5.yaml --dataset digits --resize 32 --epochs 5 "
        "--grid optimizer=sgd,adam --grid lr=0.01,0.1 --grid set.num_classes=10 --seeds 2",
    )
    sweep.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="an axis (repeatable): a training option (lr, optimizer, batch_size, augment, ...) or "
        "set.PARAM for a spec parameter; values are YAML scalars",
    )
    _add_common(sweep)
    sweep.set_defaults(handler=run_sweep_command)

    compare = subparsers.add_parser(
        "compare",
        help="train several specs with the same recipe, or tabulate existing runs",
        description=(
            "Train each SPEC with the same training options (x seeds) and tabulate "
            "them, like a sweep whose axis is the model; or, with --runs, tabulate "
            "runs that already exist (run directories, sweep directories or "
            "folders of runs), grouped by what differs between them."
        ),
    )
    compare.add_argument("specs", nargs="*", metavar="SPEC", help="spec files to train and compare")
    compare.add_argument(
        "--runs", nargs="+", metavar="DIR", help="tabulate these existing runs instead of training"
    )
    _add_common(compare)
    compare.set_defaults(handler=run_compare_command)

    page = subparsers.add_parser(
        "html",
        help="one self-contained HTML page for a run or a sweep",
        description=(
            "Write an HTML page with the results table, curves, accuracy trade-offs, and each "
            "model's diagram and per-layer table; everything inline, no external resources."
        ),
    )
    page.add_argument(
        "dir", metavar="DIR", help="a run directory, a sweep directory or a folder of runs"
    )
    add_output_option(page, "the page (default DIR/report.html)")
    page.set_defaults(handler=run_html_command)


def _add_common(parser: argparse.ArgumentParser) -> None:
    from archc.experiments.grid import MANAGED
    from archc.experiments.results import FORMATS
    from archc.trainer.cli import add_config_flags

    exp = parser.add_argument_group("experiment")
    exp.add_argument(
        "--seeds",
        type=positive_int,
        metavar="K",
        help="train each point with K seeds (--seed, --seed+1, ...)",
    )
    exp.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="J",
        help="trainings in parallel processes, each with cores/J torch threads (default 1)",
    )
    exp.add_argument(
        "--out",
        dest="sweep_out",
        metavar="DIR",
        help="sweep directory (default runs/sweep/SPEC or runs/compare/A+B); the same DIR resumes",
    )
    exp.add_argument(
        "--retry-failed", action="store_true", help="train runs that failed before again"
    )
    exp.add_argument(
        "--dry-run", action="store_true", help="check everything and list the runs, train nothing"
    )
    add_format_option(exp, FORMATS, help="how to print the results (default table)")
    add_spec_options(parser, limits=False)
    add_config_flags(parser, exclude=MANAGED)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """Only the training flags given: everything else keeps each spec's train: section."""
    from archc.trainer.cli import config_of

    return config_of(args)


def _default_out(kind: str, names: list[str]) -> Path:
    from archc.experiments.grid import value_slug

    name = "+".join(value_slug(n) for n in names)
    if len(name) > MAX_DEFAULT_NAME:
        name = name[: MAX_DEFAULT_NAME - 4] + "+etc"
    return Path("runs") / kind / name


def run_sweep_command(args: argparse.Namespace) -> int:
    from archc.experiments import Variant, grid_axes

    return _train_and_report(
        args, [Variant(Path(args.spec).stem, args.spec)], grid_axes(args.grid), "sweep"
    )


def run_compare_command(args: argparse.Namespace) -> int:
    from archc.experiments.compare import spec_variants

    if args.runs and args.specs:
        raise ExperimentError(
            "give spec files to train or --runs DIR... to tabulate existing runs, not both"
        )
    if args.runs:
        return _tabulate(args)
    if not args.specs:
        raise ExperimentError(
            "compare needs spec files to train, or --runs DIR... for existing runs"
        )
    return _train_and_report(args, spec_variants(args.specs), [], "compare")


def _tabulate(args: argparse.Namespace) -> int:
    from archc.experiments.compare import collect_runs
    from archc.experiments.results import write_all

    runs = collect_runs(args.runs)
    _print_results(runs, args.format)
    if args.sweep_out:
        files = write_all(runs, Path(args.sweep_out))
        print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    elif args.format == "table":
        print("pass --out DIR to write results.md, results.csv and plots", file=sys.stderr)
    return 0


def _print_results(runs: list[RunResult], fmt: str) -> None:
    from archc.experiments.results import render

    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    sys.stdout.write(render(runs, fmt, width))


def _train_and_report(
    args: argparse.Namespace, variants: list[Variant], axes: list[Axis], kind: str
) -> int:
    from archc.compiler.validate import parse_override
    from archc.experiments import _seed_list, make_plan, run_sweep
    from archc.experiments.results import load_sweep

    config = _config(args)
    spec_set = dict(parse_override(item) for item in args.overrides)
    seeds = _seed_list(args.seeds, config)
    out = Path(args.sweep_out) if args.sweep_out else _default_out(kind, [v.name for v in variants])
    plan = make_plan(
        out,
        variants,
        axes,
        seeds,
        config,
        spec_set,
        tuple(args.plugins),
        args.input_shape,
        "compare" if len(variants) > 1 else "sweep",
    )
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        return _print_plan(plan)
    outcome = run_sweep(plan, jobs=args.jobs, retry_failed=args.retry_failed)
    _print_results(load_sweep(out), args.format)
    if outcome.files:
        print(
            f"wrote {out / 'results.md'}, {out / 'results.csv'}, "
            f"{out / 'runs.csv'} and plots in {out}",
            file=sys.stderr,
        )
    if outcome.interrupted:
        return 130
    failed = [r["id"] for r in outcome.runs if r["status"] == "failed"]
    unfinished = [r["id"] for r in outcome.runs if r["status"] in ("partial", "pending", "running")]
    if failed:
        shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        raise ExperimentError(
            f"{len(failed)} of {len(outcome.runs)} runs failed ({shown}); errors in "
            f"{out / 'sweep.json'} and each run's train.log; rerun with --retry-failed"
        )
    if unfinished:
        raise ExperimentError(
            f"{len(unfinished)} runs did not finish; run the same command again to resume them"
        )
    return 0


def _print_plan(plan: SweepPlan) -> int:
    from archc.experiments.rundir import read_state

    width = max((len(r.id) for r in plan.runs), default=3)
    print(f"{len(plan.runs)} runs in {plan.out}:")
    for run in plan.runs:
        state = read_state(plan.out / run.id)
        print(f"  {run.id:<{width}}  {run.spec}  {run.params:,} params  {state.status}")
    return 0


def run_html_command(args: argparse.Namespace) -> int:
    """Write the HTML page of a run or sweep directory and print its path."""
    from archc.experiments.html import write_html_report

    source = Path(args.dir)
    print(write_html_report(source, Path(args.output) if args.output else source / "report.html"))
    return 0
