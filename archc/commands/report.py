"""`archc report`: the per-layer table of one spec, or a comparison
table of several (no torch import)."""

from __future__ import annotations

import argparse
import shutil
import sys

from archc.commands.common import (
    add_columns_option,
    add_format_option,
    add_output_option,
    add_spec_options,
    emit_text,
    limits_of,
    load_spec,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from archc.analysis.memory import DTYPE_BYTES
    from archc.analysis.report import FORMATS

    parser = subparsers.add_parser(
        "report",
        help=(
            "per-layer params, MACs, FLOPs, memory and "
            "receptive field; a comparison for several specs"
        ),
        description=(
            "Static per-layer report of a spec as a block tree: output shapes, "
            "params, MACs, FLOPs, other ops, activation memory, receptive field and "
            "effective stride, with totals and a training-memory estimate. With "
            "several specs, one comparison table. No forward pass, no torch import."
        ),
    )
    parser.add_argument("specs", nargs="*", metavar="SPEC")
    parser.add_argument(
        "--html", metavar="DIR", help="one self-contained HTML page for a run or sweep directory"
    )
    add_output_option(
        parser,
        "write the report to FILE (any --format; with --html, the page: default DIR/report.html)",
    )
    parser.add_argument(
        "--depth",
        type=positive_int,
        default=None,
        metavar="N",
        help=(
            "fold blocks nested deeper than N into one row with their totals (default: all levels)"
        ),
    )
    add_format_option(parser, FORMATS)
    add_columns_option(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="B",
        help="batch size for activation and training memory (default %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        choices=list(DTYPE_BYTES),
        default="float32",
        help="element type for memory figures (default %(default)s)",
    )
    add_spec_options(parser)
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from archc.analysis.report import compare, render, render_compare, report_rows, totals
    from archc.compiler.expand import expand
    from archc.errors import ArchcError

    if args.html:
        from pathlib import Path

        from archc.experiments.html import write_html_report

        source = Path(args.html)
        print(
            write_html_report(source, Path(args.output) if args.output else source / "report.html")
        )
        return 0
    if not args.specs:
        raise ArchcError("give spec files, or --html DIR")

    graphs = [expand(load_spec(path, args), limits_of(args)) for path in args.specs]
    tty = sys.stdout.isatty() and not args.output
    width = shutil.get_terminal_size().columns if tty else None  # a pipe or file gets every column
    if len(graphs) == 1:
        graph = graphs[0]
        text = render(
            report_rows(graph, args.depth, args.batch_size, args.dtype),
            totals(graph, args.batch_size, args.dtype),
            args.format,
            width,
            color=tty,
            columns=args.columns,
        )
    else:
        text = render_compare(
            compare(graphs, args.batch_size, args.dtype),
            args.format,
            args.batch_size,
            args.dtype,
            width,
            color=tty,
        )
    emit_text(text, args.output)
    return 0
