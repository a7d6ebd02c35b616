"""Options every spec-taking command shares: --set, --plugin, --input, --format, limits."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from archc.errors import SpecError
from archc.expand import Limits
from archc.validate import parse_override


def add_spec_options(parser: argparse.ArgumentParser, input_override: bool = True) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec parameter (repeatable), e.g. --set num_classes=10 --set bn=false")
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import a Python module that registers extra ops (repeatable)")
    if input_override:
        parser.add_argument("--input", dest="input_shape", metavar="C,H,W", type=parse_shape,
                            help="override the spec's input shape, e.g. 1,28,28")
    group = parser.add_argument_group("limits")
    group.add_argument("--max-nodes", type=int, default=Limits.max_nodes, help="refuse specs with more nodes (default %(default)s)")
    group.add_argument("--max-repeat", type=int, default=Limits.max_repeat, help="largest repeat count (default %(default)s)")
    group.add_argument("--max-depth", type=int, default=Limits.max_depth, help="deepest block nesting (default %(default)s)")
    group.add_argument("--force", action="store_true", help="allocate even if the model looks too large for this machine's memory")


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W integers, got {text!r}") from None
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive C,H,W, got {text!r}")
    return shape


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    return dict(parse_override(item) for item in args.overrides)


def limits_of(args: argparse.Namespace) -> Limits:
    return Limits(max_nodes=args.max_nodes, max_repeat=args.max_repeat, max_depth=args.max_depth)


def load_spec(path: str, args: argparse.Namespace) -> Any:
    """Load a spec with the command's --set/--plugin/--input applied."""
    from archc.validate import load

    spec = load(path, overrides_of(args), tuple(args.plugins))
    if getattr(args, "input_shape", None):
        spec.input_shape = args.input_shape
    return spec


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def fail(message: str) -> SpecError:
    return SpecError(message)
