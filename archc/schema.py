"""JSON Schema of spec files, for editors: the pydantic models plus the layer grammar from the ops.

Layer items are validated by the expander in archc proper; this schema mirrors those rules closely
enough for completion and live validation in VS Code's YAML extension.
"""

from __future__ import annotations

from typing import Any

from archc import ops
from archc.compiler.expand import META_KEYS
from archc.compiler.spec import SpecModel
from archc.compiler.train_config import TrainConfig

EXPRESSION = {
    "type": "string",
    "pattern": r"^\s*\$",
    "description": "an archc expression: ${...} or $name",
}


def _with_expressions(schema: dict[str, Any]) -> dict[str, Any]:
    """Every argument may also be written as an expression string."""
    for name, prop in list(schema.get("properties", {}).items()):
        schema["properties"][name] = {
            "anyOf": [prop, {"$ref": "#/$defs/Expression"}],
            "description": prop.get("description", ""),
        }
    return schema


def spec_json_schema() -> dict[str, Any]:
    root = SpecModel.model_json_schema()
    defs: dict[str, Any] = root.setdefault("$defs", {})
    defs["Expression"] = EXPRESSION
    item_props: dict[str, Any] = {
        "name": {"type": "string", "description": "module name and reference label"},
        "from": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "input node name(s)",
        },
        "when": {
            "anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/Expression"}],
            "description": "drop the item when false",
        },
        "repeat": {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"$ref": "#/$defs/Expression"},
                {"type": "array", "minItems": 1},
                {
                    "type": "object",
                    "properties": {"count": {}, "var": {"type": "string"}},
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"each": {}, "as": {"type": "string"}, "var": {"type": "string"}},
                    "required": ["each"],
                    "additionalProperties": False,
                },
            ],
            "description": "a count, or a list (one repetition per element)",
        },
        "then": {"anyOf": [{"$ref": "#/$defs/LayerItem"}, {"$ref": "#/$defs/LayerList"}]},
        "head": {
            "anyOf": [
                {"type": "boolean"},
                {
                    "type": "object",
                    "properties": {
                        "loss_weight": {"type": "number"},
                        "train_only": {"type": "boolean"},
                        "order": {"type": "integer", "minimum": 1},
                    },
                    "additionalProperties": False,
                },
            ]
        },
        "doc": {"type": "string"},
        "checkpoint": {
            "anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/Expression"}],
            "description": (
                "recompute a block call's or seq's activations in backward (less memory)"
            ),
        },
        "seq": {"$ref": "#/$defs/LayerList"},
    }
    assert set(META_KEYS) <= set(item_props)
    for name, op in ops.canonical().items():
        args_schema = op.Args.model_json_schema()
        defs.update(args_schema.pop("$defs", {}))
        options: list[dict[str, Any]] = [
            _with_expressions(args_schema),
            {"type": "null"},
            {"$ref": "#/$defs/Expression"},
        ]
        if op.shorthand is not None:
            options.append(args_schema["properties"][op.shorthand]["anyOf"][0])
        if op.multi_input:
            listed = {
                "type": "array",
                "items": {"anyOf": [{"$ref": "#/$defs/LayerItem"}, {"$ref": "#/$defs/LayerList"}]},
            }
            options.append(listed)
            if args_schema.get("properties"):  # `concat: {dim: 1, branches: [...]}`
                with_branches = _with_expressions(op.Args.model_json_schema())
                with_branches.pop("$defs", None)
                with_branches["properties"]["branches"] = {
                    **listed,
                    "minItems": 1,
                    "description": "the branches",
                }
                with_branches["required"] = [*with_branches.get("required", []), "branches"]
                options.append(with_branches)
        for key in (name, *op.aliases):
            item_props[key] = {"anyOf": options, "description": op.doc}
    defs["LayerItem"] = {
        "anyOf": [
            {"type": "string", "description": "an op or block name"},
            {
                "type": "object",
                "properties": item_props,
                "minProperties": 1,
                "additionalProperties": {
                    "anyOf": [{"type": "object"}, {"type": "null"}],
                    "description": "a block call",
                },
            },
        ]
    }
    defs["LayerList"] = {"type": "array", "items": {"$ref": "#/$defs/LayerItem"}}
    root["properties"]["layers"] = {"$ref": "#/$defs/LayerList", "minItems": 1}
    block = defs.get("BlockDef")
    if block:
        block["properties"]["layers"] = {"$ref": "#/$defs/LayerList", "minItems": 1}
    train = TrainConfig.model_json_schema()
    defs.update(train.pop("$defs", {}))
    # TrainConfig turns `resize: 32` into (32, 32) before validation; the schema must admit it too.
    train["properties"]["resize"] = {
        "anyOf": [{"type": "integer", "minimum": 1}, train["properties"]["resize"]]
    }
    defs["TrainConfig"] = _with_expressions(train)
    root["properties"]["train"] = {"anyOf": [{"$ref": "#/$defs/TrainConfig"}, {"type": "null"}]}
    root["title"] = "archc spec"
    root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return root
