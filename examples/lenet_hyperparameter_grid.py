"""The d2l Fashion-MNIST hyperparameter lab (LeNet, AlexNet, VGG, ResNet) at small scale: d2l's
LeNet under a grid of optimiser, learning rate and batch size.

The lab trained the sigmoid LeNet of d2l (plain SGD, no momentum) on Fashion-MNIST and varied
the optimiser, learning rate, epochs and batch size one at a time. Here the same spec trains on
scikit-learn's bundled digits (offline, resized to 28x28) over the full grid optimizer {sgd, adam}
x lr {0.01, 0.1, 0.9} x batch size {32, 128}, ten epochs each, in about two minutes on two cores.

    .venv/bin/python examples/lenet_hyperparameter_grid.py    # from the repository root

The same sweep from the shell:

    archc sweep specs/lenet_d2l.yaml --dataset digits --resize 28 --epochs 10 \\
        --grid optimizer=sgd,adam --grid lr=0.01,0.1,0.9 --grid batch_size=32,128 --jobs 2

Runs go to runs/examples/lenet_grid (rerunning resumes); tables, plots and the HTML report to
docs/experiments/lenet_grid.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from archc.experiments import sweep, write_html_report, write_results

REPO = Path(__file__).resolve().parent.parent
SPEC = "specs/lenet_d2l.yaml"
GRID = {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1, 0.9], "batch_size": [32, 128]}
RECIPE = {
    "dataset": "digits",
    "resize": 28,
}  # the rest (plain SGD, no schedule, no augmentation) is the spec's


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default="runs/examples/lenet_grid", help="sweep directory (default %(default)s)"
    )
    parser.add_argument(
        "--docs",
        default="docs/experiments/lenet_grid",
        help="where tables and plots go (default %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=2, help="parallel trainings (default %(default)s: one per core)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: one epoch, one seed, 256 images (a tenth held out for validation)",
    )
    args = parser.parse_args(argv)
    recipe = {**RECIPE, "train_subset": 256} if args.quick else RECIPE
    epochs, seeds = (1, 1) if args.quick else (args.epochs, args.seeds)
    os.chdir(REPO)
    outcome = sweep(SPEC, GRID, out=args.runs, seeds=seeds, jobs=args.jobs, epochs=epochs, **recipe)
    docs = Path(args.docs)
    files = write_results(
        [args.runs], docs, title="LeNet (d2l) under an optimiser x lr x batch-size grid on digits"
    )
    files.append(write_html_report(Path(args.runs), docs / "report.html"))
    print("\n".join(str(f) for f in files))
    return 0 if outcome.count("failed") == 0 and not outcome.interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
