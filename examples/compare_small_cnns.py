"""The CIFAR-10 comparison of small ResNet / VGG-BN / Inception post, at small scale: ResNet vs
VGG-BN vs Inception, plus the no-BN and no-augmentation ablations.

The post trained three ~100-200k-parameter CIFAR-10 networks for 80 epochs with Adam (lr 0.001)
and ablated batch norm and data augmentation on the ResNet. Here the same specs and optimiser
train on scikit-learn's bundled digits (offline, 720 training images, resized to 32x32 and fed as
one channel with --input 1,32,32) for a few epochs, two seeds each, in about three minutes on two
cores. The ablations are a spec parameter (`bn: false`) and a training option (`augment: false`).

    .venv/bin/python examples/compare_small_cnns.py    # from the repository root

Runs go to runs/examples/small_cnns (rerunning resumes); tables, plots and the HTML report to
docs/experiments/small_cnns.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from archc.experiments import Variant, sweep, write_html_report, write_results

REPO = Path(__file__).resolve().parent.parent
VARIANTS = [
    Variant("resnet", "specs/resnet_cifar.yaml"),
    Variant("vgg_bn", "specs/vgg_bn_cifar.yaml"),
    Variant("inception", "specs/inception_cifar.yaml"),
    Variant("resnet-noBN", "specs/resnet_cifar.yaml", set={"bn": False}),
    Variant("resnet-noDA", "specs/resnet_cifar.yaml", config={"augment": False}),
]
# That post's recipe (Adam, lr 0.001, from the specs' train: sections) on a small offline dataset:
# batch 32 instead of 100 so that 720 images still give 22 optimiser steps per epoch.
RECIPE = {"dataset": "digits", "resize": 32, "train_subset": 720, "batch_size": 32}
INPUT = (1, 32, 32)  # digits are grey: the CIFAR specs' first conv takes one channel here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default="runs/examples/small_cnns", help="sweep directory (default %(default)s)"
    )
    parser.add_argument(
        "--docs",
        default="docs/experiments/small_cnns",
        help="where tables and plots go (default %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--jobs", type=int, default=2, help="parallel trainings (default %(default)s: one per core)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: one epoch, one seed, 128 training images"
    )
    args = parser.parse_args(argv)
    recipe = {**RECIPE, "train_subset": 128} if args.quick else RECIPE
    epochs, seeds = (1, 1) if args.quick else (args.epochs, args.seeds)
    os.chdir(REPO)
    outcome = sweep(
        variants=VARIANTS,
        out=args.runs,
        seeds=seeds,
        jobs=args.jobs,
        input_shape=INPUT,
        epochs=epochs,
        **recipe,
    )
    docs = Path(args.docs)
    files = write_results(
        [args.runs], docs, title="Small ResNet vs VGG-BN vs Inception, with ablations, on digits"
    )
    files.append(write_html_report(Path(args.runs), docs / "report.html"))
    print("\n".join(str(f) for f in files))
    return 0 if outcome.count("failed") == 0 and not outcome.interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
