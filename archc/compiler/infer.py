"""Stage 4, infer: validate an op's arguments, then compute its output shape, params and MACs.

Pure Python over the op registry's rules: no tensors, no torch import.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from archc.compiler.ir import Node
from archc.compiler.loader import key_position, position_of
from archc.compiler.suggest import suggest_argument
from archc.errors import Complaint, Pos, SpecError, complaints
from archc.ops.base import (
    MAX_COUNT,
    MAX_DIM,
    Args,
    Layout,
    Op,
    OpError,
    Shape,
    fmt_shape,
    layout_text,
    numel,
)


class ShapeError(SpecError):
    """An op's shape rule refused its inputs: after an earlier error,
    possibly only its consequence."""

    cascade = False  # set by the expander when an input was changed by an earlier error


def validate_args(op: Op, args: dict[str, Any], body: Any, pos: Pos | None) -> Args:
    """The op's pydantic model over the rendered arguments; every bad argument is reported, each
    pointing at itself (a misspelled key rather than the required key it leaves missing)."""
    try:
        return op.Args.model_validate(args)
    except ValidationError as exc:
        found = complaints(exc)
        misspelled = any(c.kind == "extra_forbidden" for c in found)
        reports = [
            _argument_error(op, c, body, pos)
            for c in found
            if not (c.kind == "missing" and misspelled)
        ]
        raise SpecError.several(reports) from None


def _argument_error(op: Op, found: Complaint, body: object, pos: Pos | None) -> SpecError:
    key = found.loc[0] if found.loc else None
    fields = list(op.Args.model_fields)
    if found.kind == "extra_forbidden":
        where = key_position(body, key) if key is not None else pos
        if key in op.argument_notes:
            return SpecError(
                f"{op.name} takes no '{key}': {op.argument_notes[str(key)]}", where or pos
            )
        known = ", ".join(fields) or "none"
        return SpecError(
            f"unknown argument '{key}' for {op.name}{suggest_argument(str(key), op.name, fields)}; "
            f"it takes: {known}",
            where or pos,
        )
    if found.kind == "missing":
        return SpecError(f"{op.name} needs argument '{key}'", pos)
    where = position_of(body, key) if key is not None and isinstance(body, dict) else pos
    about = f"argument '{key}'" if key is not None else "arguments"
    got = f", got {found.value!r}" if key is not None and not isinstance(found.value, dict) else ""
    return SpecError(f"{op.name} {about}: {found.message}{got}", where or pos)


def make_node(
    op: Op,
    node_id: str,
    args_raw: tuple[dict[str, Any], Any] | None,
    inputs: list[str],
    shapes: list[Shape],
    labels: list[str],
    module: str | None,
    scope: str,
    pos: Pos | None,
    layouts: list[Layout] | None = None,
) -> Node:
    """Build a fully inferred IR node; shape problems become SpecErrors naming the layer."""
    raw, body = args_raw if args_raw is not None else ({}, None)
    args = validate_args(op, raw, body, pos)
    layouts = layouts if layouts is not None else [None] * len(shapes)
    try:
        # a known map or sequence in the wrong layout is named as such (attention on C×H×W); a
        # flat or unknown input's wrong rank is the shape rule's to explain (a flatten too early)
        named = (
            not op.multi_input and bool(layouts) and layouts[0] is not None and len(layouts[0]) >= 2
        )
        if named:
            check_layouts(op, args, layouts, shapes, labels)
        shape = op.infer(args, shapes, labels)
        if not named:
            check_layouts(op, args, layouts, shapes, labels)
        layout = op.layout(args, layouts, shapes, shape)
        params = op.params(args, shapes, shape)
        buffers = op.buffers(args, shapes, shape)
        macs = op.macs(args, shapes, shape)
        other = op.other_ops(args, shapes, shape)
        if (
            any(d > MAX_DIM for d in shape)
            or max(numel(shape), params, buffers, macs, other) > MAX_COUNT
        ):
            raise OpError(
                f"output {fmt_shape(shape) if all(d <= MAX_DIM for d in shape) else 'shape'} "
                "or its counts are too large (a dimension over 2^40 or a count over 2^62)"
            )
    except OverflowError as exc:  # e.g. a finite but huge scale: no shape to report
        raise SpecError(
            f"{op.name}: arguments give an output too large to represent ({exc})", pos
        ) from None
    except OpError as exc:
        who = f"'{node_id}' ({op.name})" if module else op.name
        text = str(exc)
        raise ShapeError(text if text.startswith(f"{who}:") else f"{who}: {text}", pos) from None
    return Node(
        id=node_id,
        op=op.name,
        args=args,
        inputs=inputs,
        shape=shape,
        params=params,
        buffers=buffers,
        macs=macs,
        other_ops=other,
        module=module,
        scope=scope,
        label=op.label(args),
        pos=pos,
        layout=layout,
    )


def check_layouts(
    op: Op, args: Args, layouts: list[Layout], shapes: list[Shape], labels: list[str]
) -> None:
    """An op's input in a layout it does not compute on, or a merge of inputs laid out differently
    (an H×W×C map added to a C×H×W one of the same shape), is an error
    where the layouts are known."""
    if op.multi_input:
        known = [
            (lay, label)
            for lay, label, shape in zip(layouts, labels, shapes, strict=True)
            if lay is not None and len(lay) == len(shape)
        ]
        for lay, label in known[1:]:
            if lay != known[0][0]:
                raise OpError(
                    f"{label} is laid out {layout_text(lay)} but {known[0][1]} is "
                    f"{layout_text(known[0][0])}; permute one to match"
                )
    elif layouts:
        op.check_layout(args, layouts[0], shapes[0])
