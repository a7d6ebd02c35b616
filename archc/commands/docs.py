"""`archc ops` (the op reference, generated from the registry) and `archc schema` (JSON Schema)."""

from __future__ import annotations

import argparse
import json
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from archc import ops
from archc.commands.common import add_format_option, add_output_option, add_plugin_option, emit_text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ops",
        help="list every op with its arguments",
        description="List the registered ops (including loaded plugins) and their arguments.",
    )
    add_format_option(p, ["table", "markdown", "json"])
    add_plugin_option(p)
    p.set_defaults(handler=run_ops)
    s = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of a spec file",
        description=(
            "Print the JSON Schema of archc spec files, for editors (VS Code's YAML extension)."
        ),
    )
    add_output_option(s, "write to FILE (missing folders are created) instead of stdout")
    add_plugin_option(s)
    s.set_defaults(handler=run_schema)


def describe_ops() -> list[dict[str, Any]]:
    """Each op's name, aliases, doc, shorthand and arguments (type, default, description)."""
    rows = []
    for name, op in ops.canonical().items():
        args = []
        for arg, field in op.Args.model_fields.items():
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            args.append(
                {
                    "name": arg,
                    "type": _type_name(field.annotation),
                    "required": field.is_required(),
                    "default": default,
                    "description": field.description or "",
                }
            )
        rows.append(
            {
                "name": name,
                "aliases": list(op.aliases),
                "doc": op.doc,
                "shorthand": op.shorthand,
                "inputs": "several" if op.multi_input else "one",
                "module": op.is_module,
                "args": args,
            }
        )
    return rows


def _type_name(annotation: object) -> str:
    """A reader's type: `int | list[int] | 'same' | 'valid'`, `float | null`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        return (
            f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
            if args
            else origin.__name__
        )
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def ops_markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| op | aliases | inputs | arguments | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        args = (
            "<br>".join(
                f"`{a['name']}`"
                + (" (required)" if a["required"] else f" = `{json.dumps(a['default'])}`")
                + (" *(shorthand)*" if a["name"] == row["shorthand"] else "")
                + f": {a['type']}"
                for a in row["args"]
            )
            or "none"
        )
        aliases = ", ".join(f"`{a}`" for a in row["aliases"]) or ""
        args = args.replace("|", "\\|")
        out.append(f"| `{row['name']}` | {aliases} | {row['inputs']} | {args} | {row['doc']} |")
    return "\n".join(out) + "\n"


def run_ops(args: argparse.Namespace) -> int:
    for plugin in args.plugins:
        ops.load_plugin(plugin)
    rows = describe_ops()
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif args.format == "markdown":
        print(ops_markdown(rows), end="")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="archc ops")
        for col in ("op", "arguments", "what it does"):
            table.add_column(col)
        for row in rows:
            args_text = ", ".join(
                a["name"] + ("" if a["required"] else f"={a['default']}") for a in row["args"]
            )
            table.add_row(row["name"], args_text, row["doc"])
        Console().print(table)
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from archc.schema import spec_json_schema

    for plugin in args.plugins:
        ops.load_plugin(plugin)
    text = json.dumps(spec_json_schema(), indent=2) + "\n"
    emit_text(text, args.output)
    return 0
