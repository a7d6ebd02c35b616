"""`archc diagram`: render a spec with graphviz (svg, png, pdf) or write its DOT text."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archc.analysis.diagram import DiagramError
from archc.commands.common import (
    add_format_option,
    add_spec_options,
    limits_of,
    load_spec,
    output_file,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from archc.analysis.diagram import FORMATS, MAX_BOXES, RANKDIRS

    parser = subparsers.add_parser(
        "diagram",
        help="graphviz diagram with shapes on the edges",
        description=(
            "Draw a spec: ops and key arguments as nodes, tensor shapes (C x H x W) on edges, "
            "blocks as clusters. Blocks deeper than --depth fold into one node with their totals "
            "(by default as deep as keeps the picture readable); chained identical folded blocks "
            "show once as 'xN'. Without graphviz's `dot`, writes the .dot file and exits 0."
        ),
    )
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=(
            "output file (default: the spec's name with "
            "the format's suffix, in the current directory)"
        ),
    )
    add_format_option(
        parser,
        FORMATS,
        default=None,
        help="svg, png, jpg, pdf or dot (default: from the -o suffix, else svg)",
    )
    parser.add_argument(
        "--depth",
        type=_depth,
        default="auto",
        metavar="N|all",
        help="fold blocks nested deeper than N into one node; all: draw every layer (default: the "
        f"deepest level that keeps the diagram within {MAX_BOXES} boxes)",
    )
    parser.add_argument(
        "--dpi",
        type=positive_int,
        default=None,
        metavar="DPI",
        help="resolution of png and jpg output (graphviz's default 96)",
    )
    parser.add_argument(
        "--rankdir", choices=RANKDIRS, default="TB", help="top-to-bottom or left-to-right"
    )
    add_spec_options(parser)
    parser.set_defaults(handler=run_diagram)


def _depth(text: str) -> int | str | None:
    """N, 'all' (None: every layer) or 'auto' (fit_depth)."""
    return None if text == "all" else text if text == "auto" else positive_int(text)


def output_path(spec: str, output: str | None, fmt: str | None) -> tuple[Path, str]:
    """(file, format): --format, else the -o suffix, else svg; the file defaults to the spec's stem.
    A suffix that names no format we write, or another format than --format, is refused: a .jpg
    must hold a JPEG."""
    from archc.analysis.diagram import FORMATS, SUFFIXES

    if output is None:
        fmt = fmt or "svg"
        return Path(f"{Path(spec).stem}.{fmt}"), fmt
    path = Path(output)
    suffix = path.suffix.lstrip(".").lower()
    named = SUFFIXES.get(suffix)
    if fmt is None:
        if named is None:
            raise DiagramError(
                f"cannot tell which format to write to {path}: name it .{', .'.join(SUFFIXES)} "
                "or pass --format"
            )
        return path, named
    if suffix and named != fmt:
        raise DiagramError(
            f"--format {fmt} does not match the file name {path} (a .{suffix} file); "
            f"name it .{fmt} or drop --format"
        )
    assert fmt in FORMATS
    return path, fmt


def run_diagram(args: argparse.Namespace) -> int:
    from archc.analysis.diagram import GraphvizNotFound, fit_depth, render
    from archc.compiler.expand import expand

    graph = expand(load_spec(args.spec, args), limits_of(args))
    path, fmt = output_path(args.spec, args.output, args.format)
    path = output_file(path)
    try:
        depth = fit_depth(graph) if args.depth == "auto" else args.depth
        written = render(graph, path, fmt, depth, args.rankdir, dpi=args.dpi)
    except GraphvizNotFound as exc:
        print(
            "warning: graphviz's `dot` is not installed, "
            f"so no {fmt} was rendered; wrote {exc.dot_path}",
            file=sys.stderr,
        )
        from archc.analysis.diagram import INSTALL_HINT

        print(
            f"hint: {INSTALL_HINT}; then run `dot -T{fmt} {exc.dot_path} -o {path}`",
            file=sys.stderr,
        )
        return 0
    print(f"wrote {written}", file=sys.stderr)
    return 0
