"""`archc train` and `archc evaluate`: TrainConfig's fields as flags
over the spec's `train:` section."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from archc.commands.common import add_format_option, add_spec_options, overrides_of
from archc.trainer.cli import add_config_flags, config_of

# What `archc evaluate` may change about the data; the rest of the recipe is the checkpoint's.
EVALUATE_FIELDS = (
    "dataset",
    "data_dir",
    "download",
    "resize",
    "recipe",
    "data_path",
    "memory_limit",
    "loader_workers",
    "test_subset",
    "eval_batch_size",
    "device",
)
TABLE_CLASSES = 20  # above it, text output summarises per-class accuracy instead of tabulating it


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` and `evaluate` subcommands."""
    train = subparsers.add_parser(
        "train",
        help="train a spec on a dataset (the spec's train: section gives the defaults)",
        description=(
            "Train a spec. Defaults come from the spec's `train:` section; flags override "
            "it. Writes OUT/metrics.csv, OUT/metrics.jsonl, OUT/last.pt, OUT/best.pt and "
            "OUT/result.json, and prints the result row. Multi-machine: the same command "
            "on each machine with --nnodes M --rdzv-endpoint HOST:PORT --out SHARED_DIR."
        ),
    )
    train.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    add_config_flags(train)
    add_spec_options(train, limits=False)
    add_format_option(train, ["text", "json"], help="json: print the whole result record")
    train.add_argument(
        "--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS
    )
    train.add_argument(
        "--pages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "write the model's diagram (diagram.svg), per-layer report (report.md) and the run's "
            "HTML page (report.html) into OUT at the end, and say where they are (default on)"
        ),
    )
    train.add_argument("--config-json", help=argparse.SUPPRESS)
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="test accuracy, per-class accuracy and confusion matrix of a checkpoint or of "
        "published weights",
        description=(
            "Evaluate a checkpoint on the test split. The model is rebuilt as it was trained "
            "(the checkpoint records the spec, --set and --input); dataset settings default "
            "to those it was trained with. With --pretrained, torchvision's published "
            "weights for a zoo spec are scored as torchvision scores them (the weights' own "
            "Resize/CenterCrop/normalisation, ImageFolder's class order), e.g. on ImageNet's "
            "val folder: archc evaluate resnet50 --pretrained --dataset imagefolder:VAL"
        ),
    )
    evaluate.add_argument(
        "spec", metavar="SPEC", nargs="?", default=None,
        help="spec file (YAML) or zoo name; default: the spec the checkpoint was trained from, "
        "which it carries",
    )  # fmt: skip
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", metavar="PATH", help="best.pt, last.pt or a state_dict file"
    )
    source.add_argument("--pretrained", action="store_true",
                        help="torchvision's published weights for this zoo spec")  # fmt: skip
    add_config_flags(evaluate, EVALUATE_FIELDS, flags={"eval_batch_size": "--batch-size"})
    add_spec_options(evaluate, limits=False)
    add_format_option(evaluate, ["text", "json"], help="json: print the whole report")
    evaluate.add_argument(
        "--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS
    )
    evaluate.set_defaults(handler=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from archc.trainer.api import train

    config = config_of(args)
    if args.config_json:
        config = {**json.loads(args.config_json), **config}
    record = train(
        args.spec,
        spec_overrides=overrides_of(args),
        plugins=tuple(args.plugins),
        input_shape=args.input_shape,
        **config,
    )
    if os.environ.get("RANK", "0") != "0" or args.config_json:
        return (
            0  # only rank 0 reports, and not under `--nproc` (--config-json), whose launcher prints
        )
    if record.get("elsewhere"):
        print(
            "this machine's processes finished; rank 0 wrote "
            f"{record['out']}/result.json on its machine",
            file=sys.stderr,
        )
        return 0
    print(json.dumps(record, indent=2) if args.format == "json" else result_row(record))
    if args.pages:
        _tell_pages(record)
    return 0


def _tell_pages(record: dict[str, Any]) -> None:
    """Write the run's pages and say where everything is (on stderr: stdout is the result row)."""
    from archc.trainer.pages import write_pages

    written, notes = write_pages(record)
    out = record["out"]
    lines = [f"  {kind:<10} {path}" for kind, path in written]
    lines.append(
        f"  {'checkpoint':<10} {out}/best.pt  (archc evaluate --checkpoint {out}/best.pt; "
        f"archc predict - --checkpoint {out}/best.pt IMAGE)"
    )
    tensorboard = f"; tensorboard --logdir {out}" if record["config"]["tensorboard"] else ""
    lines.append(f"  {'metrics':<10} {out}/metrics.csv{tensorboard}")
    print(f"the run is in {out}:\n" + "\n".join(lines), file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def result_row(record: dict[str, Any]) -> str:
    """One line summarising a finished run, as `make demo` and sweeps print it."""
    from archc.analysis.report import si

    macs = "?" if record["macs"] is None else si(record["macs"])
    return (
        f"{record['spec']['name']}  {record['dataset']['name']}  epochs "
        f"{record['epochs_completed']}  best epoch {record['best_epoch']}: {_best(record)}  final "
        f"test {record['final_test_acc']:.2%}  params {si(record['params'])}  MACs {macs}  "
        f"{record['images_per_s']:.0f} img/s  {record['train_time_s']:.1f}s train  {record['out']}"
    )


def _best(record: dict[str, Any]) -> str:
    """The chosen epoch's validation (if any) and test accuracy, top-5 where recorded."""
    parts = []
    for split in ("val", "test"):
        if record.get(f"best_{split}_acc") is not None:
            top5 = record.get(f"best_{split}_top5")
            parts.append(
                f"{split} {record[f'best_{split}_acc']:.2%}"
                + (f" (top-5 {top5:.2%})" if top5 is not None else "")
            )
    return ", ".join(parts)


def run_evaluate(args: argparse.Namespace) -> int:
    from archc.trainer.evaluate import evaluate

    # the data settings only: TrainConfig's `pretrained` (start training from) is not evaluate's
    config = {k: v for k, v in config_of(args).items() if k in EVALUATE_FIELDS}
    report = evaluate(args.spec, args.checkpoint, pretrained=args.pretrained,
                      spec_overrides=overrides_of(args), plugins=tuple(args.plugins),
                      input_shape=args.input_shape, **config)  # fmt: skip
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    top5 = f", top-5 {report['test_top5']:.2%}" if report["test_top5"] is not None else ""
    print(
        f"{report['spec']} on {report['dataset']} ({report['test_images']} test images): "
        f"accuracy {report['test_acc']:.2%}{top5}, loss {report['test_loss']:.4f}"
    )
    if "preprocessing" in report:
        print(f"weights: {report['checkpoint']}; preprocessing: {report['preprocessing']}")
    width = max(len(c) for c in report["classes"])
    scored = list(zip(report["per_class_acc"], report["classes"], strict=True))
    if len(scored) > TABLE_CLASSES:  # ImageNet: 1000 rows, a 1000x1000 matrix: for --format json
        worst = sorted((acc, name) for acc, name in scored if acc is not None)[:5]
        print("lowest per-class accuracy: " + ", ".join(f"{n} {acc:.2%}" for acc, n in worst))
        n = len(scored)
        print(f"per-class accuracy and the {n}x{n} confusion matrix: --format json")
        return 0
    print("per-class accuracy:")
    for acc, name in scored:
        print(f"  {name:<{width}}  {'-' if acc is None else f'{acc:.2%}'}")
    print("confusion matrix (rows: true class, columns: predicted):")
    cell = max(len(str(v)) for row in report["confusion"] for v in row)
    for name, row in zip(report["classes"], report["confusion"], strict=True):
        print(f"  {name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return 0
