"""Command-line flags generated from TrainConfig's fields, so a new field is a new flag.

Each field `some_name` becomes `--some-name`: booleans get `--x/--no-x`, Literals get choices,
tuples and lists take comma-separated values, and the field's description is the help text.
Flags default to "not given" (argparse.SUPPRESS): whatever is not on the command line keeps the
spec's `train:` value. The commands themselves live in archc/commands/train.py.

Imported to build the parser, so nothing here imports torch.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from archc.compiler.train_config import RUNTIME_FIELDS, TrainConfig

NUMBERS: dict[type, str] = {int: "integers", float: "numbers"}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_config_flags(
    parser: argparse.ArgumentParser,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
) -> None:
    """Add a flag for each TrainConfig field (all of them unless `fields` names some), in two
    groups: the recipe (what is computed) and the execution (how and
    where it runs). `flags` renames a
    field's flag (evaluate's --batch-size sets eval_batch_size)."""
    names = list(TrainConfig.model_fields) if fields is None else list(fields)
    skip, renamed = set(exclude), dict(flags or {})
    recipe = parser.add_argument_group(
        "training recipe (defaults: the spec's train: section, else shown)"
    )
    execution = parser.add_argument_group("execution")
    for name in names:
        if name in skip:
            continue
        info = TrainConfig.model_fields[name]
        group = execution if name in RUNTIME_FIELDS else recipe
        add_field_flag(group, name, info, renamed.get(name, flag_name(name)))


def add_field_flag(group: argparse._ArgumentGroup, name: str, info: FieldInfo, flag: str) -> None:
    kind = _without_none(info.annotation)
    help_text = _help(info)
    common: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
    if kind is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif get_origin(kind) is Literal:
        group.add_argument(flag, choices=[str(c) for c in get_args(kind)], **common)
    elif get_origin(kind) in (tuple, list):
        items = [a for a in get_args(kind) if a is not Ellipsis]
        metavar = (
            ",".join(["X"] * len(items))
            if get_origin(kind) is tuple and len(set(items)) == 1
            else "X,..."
        )
        group.add_argument(
            flag,
            type=_comma_list(items[0] if items else str, get_origin(kind) is list),
            metavar=metavar,
            **common,
        )
    elif kind in (int, float):
        group.add_argument(flag, type=_number(kind), metavar="N" if kind is int else "X", **common)
    else:
        group.add_argument(flag, metavar=name.upper(), **common)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """Only the TrainConfig fields given on the command line."""
    return {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields}


def _without_none(annotation: object) -> object:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _help(info: FieldInfo) -> str:
    text = info.description or ""
    default = info.get_default(call_default_factory=True)
    if default is not None and not isinstance(default, bool):
        shown = (
            ",".join(str(v) for v in default)
            if isinstance(default, (tuple, list))
            else str(default)
        )
        text = f"{text} (default {shown})" if text else f"default {shown}"
    return text.replace("%", "%%")


def _number(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None

    return parse


def _comma_list(item: Any, as_list: bool) -> Callable[[str], Any]:
    """'32,32' -> (32, 32); one value stays a scalar (TrainConfig decides what a scalar means,
    e.g. --resize 224 is 224x224)."""
    convert = item if item in NUMBERS else str

    def parse(text: str) -> Any:
        try:
            values = (
                [convert(v) for v in text.replace("x", ",").split(",")]
                if convert is not str
                else text.split(",")
            )
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {NUMBERS.get(item, 'values')}, got {text!r}"
            ) from None
        return (
            values[0]
            if len(values) == 1 and not as_list
            else (values if as_list else tuple(values))
        )

    return parse
