"""The option layer every command shares, each option declared once: --set, --plugin, --input,
--format, -o, the expansion limits and --force; plus writing an output file.

Command modules import this module and nothing else from archc.commands, so each command stays
one file that can be read on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.compiler.expand import Limits
from archc.compiler.validate import parse_override
from archc.errors import SpecError

if TYPE_CHECKING:
    from archc.compiler.validate import LoadedSpec


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W integers, got {text!r}") from None
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive C,H,W, got {text!r}")
    return shape


def add_spec_options(
    parser: argparse.ArgumentParser,
    *,
    input_shape: bool = True,
    limits: bool = True,
    force: bool = False,
) -> None:
    """--set and --plugin; --input unless the command takes its shape elsewhere; the expansion
    limits; --force only for commands that allocate the model."""
    group = parser.add_argument_group("spec")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec parameter (repeatable), e.g. --set num_classes=10 --set bn=false",
    )
    group.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a Python module that registers extra ops (repeatable)",
    )
    if input_shape:
        group.add_argument(
            "--input",
            dest="input_shape",
            metavar="C,H,W",
            type=parse_shape,
            help="override the spec's input shape, e.g. 1,28,28",
        )
    if limits:
        add_limit_options(parser)
    if force:
        parser.add_argument(
            "--force",
            action="store_true",
            help="allocate even if the model looks too large for this machine's memory",
        )


def add_plugin_option(parser: argparse.ArgumentParser) -> None:
    """--plugin alone, for commands that list ops rather than compile a spec."""
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a Python module that registers extra ops first (repeatable)",
    )


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits")
    group.add_argument(
        "--max-nodes",
        type=int,
        default=Limits.max_nodes,
        help="refuse specs with more nodes (default %(default)s)",
    )
    group.add_argument(
        "--max-repeat",
        type=int,
        default=Limits.max_repeat,
        help="largest repeat count (default %(default)s)",
    )
    group.add_argument(
        "--max-depth",
        type=int,
        default=Limits.max_depth,
        help="deepest block nesting (default %(default)s)",
    )


def add_format_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    choices: Sequence[str],
    default: str | None = "",
    help: str | None = None,
) -> None:
    """--format, the one way to ask any command for json (or markdown, csv, ...); the default is the
    first choice, or None for a command that infers the format (diagram: from the file name)."""
    default = choices[0] if default == "" else default
    parser.add_argument(
        "--format",
        choices=list(choices),
        default=default,
        help=help or f"output format (default {default})",
    )


def add_columns_option(parser: argparse.ArgumentParser) -> None:
    """--columns for commands that print the per-layer table (report, build)."""
    from archc.analysis.report import COLUMN_NAMES, DEFAULT_COLUMNS

    parser.add_argument(
        "--columns",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        metavar="A,B,...",
        help=f"the table's columns, in order (default {','.join(DEFAULT_COLUMNS)}; "
        f"any of {', '.join(COLUMN_NAMES)})",
    )


def add_output_option(
    parser: argparse.ArgumentParser, help: str = "write to FILE instead of stdout"
) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", help=help)


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    return dict(parse_override(item) for item in args.overrides)


def limits_of(args: argparse.Namespace) -> Limits:
    return Limits(max_nodes=args.max_nodes, max_repeat=args.max_repeat, max_depth=args.max_depth)


def load_spec(path: str, args: argparse.Namespace) -> LoadedSpec:
    """Load a spec with the command's --set/--plugin/--input applied."""
    from archc.api import with_input
    from archc.compiler.validate import load

    return with_input(
        load(path, overrides_of(args), tuple(args.plugins)), getattr(args, "input_shape", None)
    )


def output_file(path: str | Path) -> Path:
    """An output path whose folder exists: missing parent folders are created (as `mkdir -p`);
    a path that names a folder, or sits under a file, is refused in one line."""
    target = Path(path)
    if target.is_dir():
        raise SpecError(
            f"cannot write {target}: it is a directory; give a file name, e.g. {target / 'out'}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SpecError(f"cannot write {target}: {target.parent} is not a directory") from None
    return target


def write_output(path: str | Path, data: str | bytes) -> Path:
    """Write a command's output file atomically (a reader never sees half a file)."""
    from archc.atomic import atomic_write_bytes

    target = output_file(path)
    atomic_write_bytes(target, data.encode() if isinstance(data, str) else data)
    return target


def emit_text(text: str, output: str | None) -> None:
    """Text to -o FILE (saying so on stderr) or to stdout."""
    if output:
        written = write_output(output, text)
        print(f"wrote {written}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def json_text(data: object) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
