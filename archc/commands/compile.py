"""`archc check`, `archc build` and `archc export`: the compiler's own commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.commands.common import (
    add_columns_option,
    add_format_option,
    add_output_option,
    add_spec_options,
    emit_text,
    limits_of,
    load_spec,
    output_file,
    print_json,
    write_output,
)
from archc.errors import SpecError
from archc.ops.base import fmt_shape

if TYPE_CHECKING:
    from archc.compiler.emit import CompiledModel
    from archc.compiler.ir import Graph
    from archc.compiler.validate import LoadedSpec

EXPORT_TO = ("python", "torchscript", "onnx", "exported-program")


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "check",
        help="validate specs and infer shapes (no torch import)",
        description=(
            "Validate specs and infer every shape statically. Exit 0 if all are valid, 1 otherwise."
        ),
    )
    check.add_argument("specs", nargs="+", metavar="SPEC")
    add_format_option(check, ["text", "json"])
    add_spec_options(check)
    check.set_defaults(handler=run_check)

    build = subparsers.add_parser(
        "build",
        help="compile a spec to an nn.Module and print its layers",
        description="Compile a spec, print the per-layer table and totals, and verify once that a "
        "real forward pass gives exactly the inferred shapes.",
    )
    build.add_argument("spec", metavar="SPEC")
    add_format_option(build, ["table", "json"])
    add_columns_option(build)
    build.add_argument(
        "--save",
        metavar="FILE",
        help=(
            "save the spec, its overrides and the weights in "
            "one file; rebuild it with archc.load_model(FILE)"
        ),
    )
    build.add_argument(
        "--init-from",
        metavar="PATH",
        help="load a state_dict (e.g. torchvision's pretrained weights)",
    )
    add_spec_options(build, force=True)
    build.set_defaults(handler=run_build)

    export = subparsers.add_parser(
        "export",
        help="write the model's PyTorch source, or a TorchScript/ONNX/torch.export file",
        description=(
            "Write the model as the readable PyTorch source archc.build runs (python: "
            "needs only torch, same state_dict keys), or as a deployable artifact "
            "(torchscript, onnx, exported-program) verified against the eager model."
        ),
    )
    export.add_argument("spec", metavar="SPEC")
    export.add_argument(
        "--to",
        type=export_formats,
        action="extend",
        metavar="FORMAT",
        help=f"{' | '.join(EXPORT_TO)} (default python); repeat it or give a comma list for "
        "several: onnx and exported-program then share one trace",
    )
    add_output_option(
        export,
        "write to FILE (missing folders are created); default: stdout for python, "
        "NAME.pt / NAME.onnx / NAME.pt2 in the current directory for the others; with several "
        "formats, FILE names them all, each with its format's suffix (.py .pt .onnx .pt2)",
    )
    export.add_argument(
        "--init-from", metavar="PATH", help="load a state_dict first (deployable formats)"
    )
    add_format_option(export, ["text", "json"])
    add_spec_options(export, force=True)
    export.set_defaults(handler=run_export)


def run_check(args: argparse.Namespace) -> int:
    from archc.compiler.expand import expand

    failures = 0
    results: list[dict[str, Any]] = []
    for path in args.specs:
        try:
            graph = expand(load_spec(path, args), limits_of(args))
        except SpecError as exc:
            failures += 1
            results.append(
                {
                    "spec": path,
                    "ok": False,
                    "error": str(exc),
                    "line": exc.line,
                    "col": exc.col,
                    "errors": [
                        {"message": d.message, "line": d.line, "col": d.col, "notes": list(d.notes)}
                        for d in exc.diagnostics
                    ],
                }
            )
            if args.format == "text":
                print(exc.render(), file=sys.stderr)
            continue
        out = graph.shape_of(graph.output)
        results.append(
            {
                "spec": path,
                "ok": True,
                "name": graph.name,
                "input": list(graph.input_shape),
                "output": list(out),
                "params": graph.total_params,
                "macs": graph.total_macs,
            }
        )
        if args.format == "text":
            print(
                f"{path}: ok  {fmt_shape(graph.input_shape)} -> {fmt_shape(out)}, "
                f"{graph.total_params:,} params, {graph.total_macs:,} MACs"
            )
    if args.format == "json":
        print_json(results)
    return 1 if failures else 0


def run_build(args: argparse.Namespace) -> int:
    from archc.compiler.expand import expand

    spec = load_spec(args.spec, args)
    graph = expand(spec, limits_of(args))
    model = built(graph, spec, args)
    verify(model)
    if args.save:
        save_model(model, spec, args.save)
    if args.format == "json":
        from archc.api import Analysis

        analysis = Analysis(graph)
        print_json({"spec": args.spec, **analysis.totals(), "layers": analysis.rows()})
    else:
        print_table(graph, args.columns)
    if args.save and args.format != "json":
        print(f"saved {args.save}")
    return 0


def built(graph: Graph, spec: LoadedSpec, args: argparse.Namespace) -> CompiledModel:
    """The module `build` and `export` emit: refused if it would not fit in memory (unless
    --force), with --init-from's weights loaded (every mismatch named)."""
    from archc.compiler.emit import build_module
    from archc.compiler.guard import check_fits

    if not args.force:
        check_fits(graph)
    model = build_module(graph, spec.model.init, args.spec)
    if args.init_from:
        from archc.weights import WeightsError, load_weights

        try:
            load_weights(model, args.init_from)
        except WeightsError as exc:
            raise WeightsError(f"--init-from: {exc}") from None
    return model


def verify(model: CompiledModel) -> None:
    """One real forward on zeros must reproduce every inferred shape; anything else is our bug."""
    import torch

    from archc.compiler.emit import count_tensors, probe_shapes

    graph = model.archc_graph
    was_training = model.training
    model.eval()
    with torch.no_grad():
        shapes = probe_shapes(model, torch.zeros(1, *graph.input_shape))
    model.train(was_training)
    for node in graph:
        if shapes.get(node.id) != node.shape:
            raise RuntimeError(
                f"internal error: {node.id} inferred {node.shape} but ran as {shapes.get(node.id)}"
            )
    params, buffers = count_tensors(model)
    if params != graph.total_params or buffers != graph.total_buffers:
        raise RuntimeError(
            f"internal error: inferred {graph.total_params} params/{graph.total_buffers} buffers, "
            f"module has {params}/{buffers}"
        )


def save_model(model: CompiledModel, spec: LoadedSpec, path: str) -> None:
    from archc.saved import model_bytes

    write_output(path, model_bytes(model, spec))


def print_table(graph: Graph, columns: list[str] | None) -> None:
    """The per-layer table of `archc report`, every layer: one table, one look."""
    import shutil

    from archc.analysis.report import render, report_rows, totals

    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if tty else None
    sys.stdout.write(
        render(report_rows(graph), totals(graph), "table", width, color=tty, columns=columns)
    )


def export_formats(text: str) -> list[str]:
    """`--to` values: one format or a comma list of them."""
    formats = [item.strip() for item in text.split(",")]
    for fmt in formats:
        if fmt not in EXPORT_TO:
            raise argparse.ArgumentTypeError(
                f"invalid format {fmt!r} (choose from {', '.join(EXPORT_TO)})"
            )
    return formats


def run_export(args: argparse.Namespace) -> int:
    from archc.compiler.expand import expand

    formats = list(dict.fromkeys(args.to or ["python"]))
    spec = load_spec(args.spec, args)
    graph = expand(spec, limits_of(args))
    if formats == ["python"]:
        from archc.compiler.export import export_python

        emit_text(export_python(graph, spec.model.init, args.spec), args.output)
        return 0
    from archc.compiler.deploy import SUFFIX, export_artifacts

    suffixes = {"python": ".py", **SUFFIX}
    if len(formats) == 1:
        outputs = {formats[0]: output_file(args.output or f"{graph.name}{suffixes[formats[0]]}")}
    else:  # one name for all: FILE (its own format suffix dropped) plus each format's suffix
        base = output_file(args.output) if args.output else Path(graph.name)  # not a folder
        if base.suffix in suffixes.values():
            base = base.with_suffix("")
        outputs = {fmt: output_file(f"{base}{suffixes[fmt]}") for fmt in formats}
    reports: list[dict[str, Any]] = []
    if "python" in outputs:
        from archc.compiler.export import export_python

        write_output(outputs["python"], export_python(graph, spec.model.init, args.spec))
        reports.append({"format": "python", "path": str(outputs.pop("python"))})
    model = built(graph, spec, args)
    reports += export_artifacts(model, outputs)
    reports.sort(key=lambda report: formats.index(report["format"]))  # in the order asked
    if args.format == "json":
        print_json(reports[0] if len(reports) == 1 else reports)
        return 0
    checked = "outputs equal the eager model's on a batch of 3"
    for report in reports:
        detail = f"{report['format']}, {checked}" if "verified" in report else report["format"]
        print(f"wrote {report['path']} ({detail})", file=sys.stderr)
    return 0
