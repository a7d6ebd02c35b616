"""`archc train` and `archc evaluate`: flags over the spec's `train:` section, errors as one line.

Imported by archc/cli.py to build the parser, so nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from archc.train_config import TrainConfig


def _ints(count: int | None, what: str) -> Callable[[str], tuple[int, ...]]:
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.replace("x", ",").split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (count is not None and len(values) != count) or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values

    return parse


def _resize(text: str) -> tuple[int, int]:
    values = _ints(None, "H or H,W (positive integers)")(text)
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected H or H,W, got {text!r}")
    return (values[0], values[-1])


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` and `evaluate` subcommands."""
    train = subparsers.add_parser(
        "train",
        help="train a spec on a dataset (the spec's train: section gives the defaults)",
        description="Train a spec. Defaults come from the spec's `train:` section; flags override it. Writes OUT/metrics.csv, "
        "OUT/metrics.jsonl, OUT/last.pt, OUT/best.pt and OUT/result.json, and prints the result row. "
        "Multi-machine: torchrun --nnodes M --nproc_per_node N ... -m archc train SPEC ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    train.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME", help="cifar10, cifar100, mnist, fashion_mnist, kmnist, digits, synthetic or imagefolder:PATH")
    data.add_argument("--data-dir", metavar="DIR", help="dataset cache (default ~/.cache/archc/data)")
    data.add_argument("--no-download", dest="download", action="store_false", help="never download; fail if the dataset is absent")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, help="random crop and flip (default: the dataset's own)")
    data.add_argument("--crop-padding", type=int, metavar="P", help="random-crop padding in pixels (default: the dataset's)")
    data.add_argument("--hflip", action=argparse.BooleanOptionalAction, help="random horizontal flips (default: the dataset's)")
    data.add_argument("--resize", type=_resize, metavar="H[,W]", help="resize images on the device, e.g. 224 or 32,32")
    data.add_argument("--train-subset", type=int, metavar="N", help="use the first N training images")
    data.add_argument("--test-subset", type=int, metavar="N", help="use the first N test images")
    data.add_argument("--synthetic-size", type=_ints(2, "TRAIN,TEST counts"), metavar="TRAIN,TEST", help="synthetic: image counts")
    data.add_argument("--synthetic-shape", type=_ints(3, "C,H,W"), metavar="C,H,W", help="synthetic: image shape (default: the spec's input)")
    data.add_argument("--synthetic-classes", type=int, metavar="K", help="synthetic: number of classes")
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, metavar="N")
    opt.add_argument("--batch-size", type=int, metavar="B", help="global batch, split across --nproc processes")
    opt.add_argument("--eval-batch-size", type=int, metavar="B", help="default 2 x the per-process batch")
    opt.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    opt.add_argument("--lr", type=float, metavar="X")
    opt.add_argument("--momentum", type=float, metavar="M")
    opt.add_argument("--nesterov", action=argparse.BooleanOptionalAction)
    opt.add_argument("--weight-decay", type=float, metavar="W")
    opt.add_argument("--betas", type=_floats, metavar="B1,B2", help="Adam/AdamW betas")
    opt.add_argument("--schedule", choices=["none", "step", "multistep", "cosine", "onecycle"], help="stepped every iteration")
    opt.add_argument("--milestones", type=_floats, metavar="M1,M2", help="multistep: fractions of training (<1) or epochs")
    opt.add_argument("--step-size", type=int, metavar="E", help="step: epochs between decays")
    opt.add_argument("--gamma", type=float, metavar="G", help="step/multistep decay factor")
    opt.add_argument("--warmup-epochs", type=float, metavar="E", help="linear warmup length (may be fractional)")
    opt.add_argument("--label-smoothing", type=float, metavar="S")
    opt.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the global gradient norm")
    opt.add_argument("--aux-weight", type=float, metavar="W", help="loss weight of a plain module's extra outputs")
    run = train.add_argument_group("execution")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, help="mixed precision (bf16 on CPUs that support it)")
    run.add_argument("--amp-dtype", choices=["auto", "bf16", "fp16"])
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction)
    run.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model")
    run.add_argument("--seed", type=int, metavar="S")
    run.add_argument("--deterministic", action=argparse.BooleanOptionalAction, help="deterministic algorithms only")
    run.add_argument("--workers", type=int, metavar="N", help="CPU threads (default: available cores / processes)")
    run.add_argument("--nproc", type=int, metavar="N", help="data-parallel processes on this machine, via torchrun")
    run.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME/TIMESTAMP)")
    run.add_argument("--resume", action=argparse.BooleanOptionalAction, help="continue OUT/last.pt if it exists")
    run.add_argument("--init-from", metavar="PATH", help="initial weights: a state_dict or an archc checkpoint")
    run.add_argument("--log", choices=["auto", "bar", "plain", "quiet"], help="progress display")
    _add_spec_flags(train)
    train.add_argument("--json", action="store_true", help="print the whole result record as JSON")
    train.add_argument("--config-json", help=argparse.SUPPRESS)
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="test accuracy, per-class accuracy and confusion matrix of a checkpoint",
        description="Evaluate a checkpoint on the test split. Dataset settings default to those it was trained with.",
        argument_default=argparse.SUPPRESS,
    )
    evaluate.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    evaluate.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt, last.pt or a state_dict file")
    evaluate.add_argument("--dataset", metavar="NAME")
    evaluate.add_argument("--data-dir", metavar="DIR")
    evaluate.add_argument("--no-download", dest="download", action="store_false")
    evaluate.add_argument("--resize", type=_resize, metavar="H[,W]")
    evaluate.add_argument("--test-subset", type=int, metavar="N")
    evaluate.add_argument("--batch-size", dest="eval_batch_size", type=int, metavar="B")
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    _add_spec_flags(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(handler=run_evaluate)


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec parameter (repeatable), e.g. --set in_channels=1")
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import a module that registers extra ops (repeatable)")


def _config_of(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags given on the command line: everything else keeps the spec's value."""
    return {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields}


def _spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from archc.validate import parse_override

    return dict(parse_override(item) for item in args.overrides)


def _fail(message: str) -> int:
    rank = os.environ.get("RANK", "0")
    prefix = f"rank {rank}: " if rank != "0" else ""
    print(f"{prefix}error: {message}", file=sys.stderr)
    return 1


def run_train(args: argparse.Namespace) -> int:
    from archc.trainer.api import train
    from archc.trainer.errors import TrainError

    config = _config_of(args)
    if getattr(args, "config_json", None):
        config = {**json.loads(args.config_json), **config}
    try:
        record = train(args.spec, spec_overrides=_spec_overrides(args), plugins=tuple(args.plugins), **config)
    except TrainError as exc:
        return _fail(str(exc))
    if os.environ.get("RANK", "0") != "0" or getattr(args, "config_json", None):
        return 0  # only rank 0 reports, and not under `--nproc` (--config-json), whose launcher prints
    if getattr(args, "json", False):
        print(json.dumps(record, indent=2))
    else:
        print(result_row(record))
    return 0


def result_row(record: dict[str, Any]) -> str:
    """One line summarising a finished run, as `make demo` and sweeps print it."""
    macs = "?" if record["macs"] is None else f"{record['macs'] / 1e6:.2f}M"
    return (
        f"{record['spec']['name']}  {record['dataset']['name']}  epochs {record['epochs_completed']}  "
        f"best {record['best_test_acc']:.2%} (epoch {record['best_epoch']})  final {record['final_test_acc']:.2%}  "
        f"params {record['params']:,}  MACs {macs}  {record['images_per_s']:.0f} img/s  "
        f"{record['train_time_s']:.1f}s train  {record['out']}"
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from archc.trainer.errors import TrainError
    from archc.trainer.evaluate import evaluate

    config = _config_of(args)
    try:
        report = evaluate(args.spec, args.checkpoint, spec_overrides=_spec_overrides(args), plugins=tuple(args.plugins), **config)
    except TrainError as exc:
        return _fail(str(exc))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['spec']} on {report['dataset']} ({report['test_images']} test images): "
          f"accuracy {report['test_acc']:.2%}, loss {report['test_loss']:.4f}")
    width = max(len(c) for c in report["classes"])
    print("per-class accuracy:")
    for name, acc in zip(report["classes"], report["per_class_acc"], strict=True):
        print(f"  {name:<{width}}  {'-' if acc is None else f'{acc:.2%}'}")
    print("confusion matrix (rows: true class, columns: predicted):")
    cell = max(len(str(v)) for row in report["confusion"] for v in row)
    for name, row in zip(report["classes"], report["confusion"], strict=True):
        print(f"  {name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return 0
