"""`archc diagram`: render a spec with graphviz (svg, png, pdf) or write its DOT text."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archc.commands.common import add_spec_options, limits_of, load_spec
from archc.commands.report import positive_int
from archc.errors import SpecError


def register(subparsers: argparse._SubParsersAction) -> None:
    from archc.diagram import FORMATS, RANKDIRS

    parser = subparsers.add_parser(
        "diagram", help="graphviz diagram with shapes on the edges",
        description="Draw a spec: ops and key arguments as nodes, tensor shapes (C x H x W) on edges, blocks as "
                    "clusters. Blocks deeper than --depth fold into one node with their totals; chained identical "
                    "folded blocks show once as 'xN'. Without graphviz's `dot`, writes the .dot file and exits 0.",
    )
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="output file (default: the spec's name with the format's suffix, in the current directory)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="svg, png, pdf or dot (default: from the -o suffix, else svg)")
    parser.add_argument("--depth", type=positive_int, default=None, metavar="N",
                        help="fold blocks nested deeper than N into one node (default: draw every layer)")
    parser.add_argument("--rankdir", choices=RANKDIRS, default="TB", help="top-to-bottom or left-to-right")
    add_spec_options(parser)
    parser.set_defaults(handler=run_diagram)


def output_path(spec: str, output: str | None, fmt: str | None) -> tuple[Path, str]:
    """(file, format): the format follows --format, else the -o suffix, else svg; the file defaults to the spec's stem."""
    from archc.diagram import FORMATS

    if fmt is None:
        suffix = Path(output).suffix.lstrip(".").lower() if output else ""
        fmt = suffix if suffix in FORMATS else "svg"
    path = Path(output) if output else Path(f"{Path(spec).stem}.{fmt}")
    return path, fmt


def run_diagram(args: argparse.Namespace) -> int:
    from archc.diagram import DiagramError, GraphvizNotFound, render
    from archc.expand import expand

    graph = expand(load_spec(args.spec, args), limits_of(args))
    path, fmt = output_path(args.spec, args.output, args.format)
    try:
        written = render(graph, path, fmt, args.depth, args.rankdir)
    except GraphvizNotFound as exc:
        print(f"warning: graphviz's `dot` is not installed, so no {fmt} was rendered; wrote {exc.dot_path}",
              file=sys.stderr)
        from archc.diagram import INSTALL_HINT

        print(f"hint: {INSTALL_HINT}; then run `dot -T{fmt} {exc.dot_path} -o {path}`", file=sys.stderr)
        return 0
    except DiagramError as exc:
        raise SpecError(str(exc)) from None
    except OSError as exc:
        raise SpecError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {written}", file=sys.stderr)
    return 0
