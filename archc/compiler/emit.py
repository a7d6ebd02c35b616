"""Stage 5, emit: the IR -> an nn.Module, by executing the one generated
source (archc.compiler.codegen).

What `archc.build` returns is an instance of the source's root class (the very code
`archc export --to python` writes, exposed as `model.code`), with the IR attached for reports
and the trainer. Modules live at the dotted paths the spec named, so state_dict keys are
predictable (and equal torchvision's for the parity specs).
"""

from __future__ import annotations

import itertools
import linecache
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archc.compiler.codegen import class_name, module_source, probe_source
from archc.compiler.ir import Graph, Head
from archc.compiler.spec import InitSpec

_counter = itertools.count()


class CompiledModel(nn.Module):
    """What archc.build returns: the generated root class, with the IR and output heads attached.

    A mixin without methods or annotations (TorchScript would try to type them), so that no layer
    name clashes with it. The instance carries `archc_graph` (the IR), `archc_heads` (the output
    heads, for the trainer) and `code` (the source it runs); archc.compiler.names
    reserves these names at the top level.
    """

    if TYPE_CHECKING:  # declared for the type checker only: at run time the class stays bare
        archc_graph: Graph
        archc_heads: list[Head]
        code: str


def execute(source: str, filename: str) -> dict[str, Any]:
    """Run generated source (ours, from validated names and plain-data
    literals), visible to tracebacks."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"__name__": f"archc_generated_{next(_counter)}"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def build_module(
    graph: Graph, init: InitSpec | None = None, origin: str | None = None
) -> CompiledModel:
    """Emit the nn.Module for a graph: execute its generated source
    and instantiate the root class."""
    source = module_source(graph, init, origin or f"{graph.name}.yaml")
    name = class_name(graph.name)
    namespace = execute(source, f"<archc:{name}:{next(_counter)}>")
    root = namespace[name]
    cls = type(
        name, (root, CompiledModel), {"__module__": root.__module__, "__doc__": root.__doc__}
    )
    model: CompiledModel = cls()
    model.archc_graph = graph
    model.archc_heads = list(graph.heads)
    model.code = source
    return model


def probe_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Run the model's layers once recording every node's runtime
    shape (batch dimension dropped)."""
    graph: Graph = model.archc_graph  # type: ignore[assignment]
    shapes: dict[str, tuple[int, ...]] = {}

    def record(node_id: str, value: torch.Tensor) -> None:
        shapes[node_id] = tuple(value.shape[1:])

    namespace = execute(
        probe_source(graph), f"<archc:{class_name(graph.name)}:probe:{next(_counter)}>"
    )
    namespace["_probe"].__globals__.update(record=record, torch=torch)
    namespace["_probe"](model, x)
    return shapes


def count_tensors(model: nn.Module) -> tuple[int, int]:
    """(parameters, buffer elements), counting shared tensors once."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return params, buffers


__all__ = ["CompiledModel", "build_module", "count_tensors", "execute", "probe_shapes"]
