"""Stage 5, emit: the IR -> a plain nn.Module with generated straight-line forward code.

Modules live at the dotted paths the spec named, so state_dict keys are predictable (and equal
torchvision's for the parity specs). Initialisation follows the spec's `init:` rules.
"""

from __future__ import annotations

import itertools
import linecache
from typing import Any

import torch
from torch import nn

from archc import ops
from archc.codegen import ForwardWriter, forward_sources, inplace_nodes
from archc.errors import SpecError
from archc.ir import Graph, Head
from archc.spec import InitRule, InitSpec

_counter = itertools.count()


class Block(nn.Module):
    """A named group of layers (a block call or a seq); its forward lives in the root's code."""

    def __init__(self, block: str | None) -> None:
        super().__init__()
        self.block = block

    def extra_repr(self) -> str:
        return f"block={self.block}" if self.block else ""

    def forward(self, *args: Any) -> Any:
        raise RuntimeError("archc blocks run inside the compiled model's forward, not on their own")


class CompiledModel(nn.Module):
    """Base class of emitted models. Carries the IR and the output-head metadata for the trainer."""

    archc_graph: Graph
    archc_heads: list[Head]
    code: str

    def extra_repr(self) -> str:
        return f"spec={self.archc_graph.name!r}"

    def forward(self, x: torch.Tensor) -> Any:  # replaced per model; only two-mode models reach here
        return self._forward_train(x) if self.training else self._forward_eval(x)  # type: ignore[attr-defined]


def instantiate(target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> nn.Module:
    """Construct `nn.X(...)` from an op's Call; only torch.nn classes are reachable."""
    prefix, _, attr = target.partition(".")
    cls = getattr(nn, attr, None) if prefix == "nn" and attr.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"op emitted an unsupported target {target!r}")
    return cls(*args, **kwargs)


def compile_function(source: str, name: str, filename: str) -> Any:
    """Compile generated code (ours, from validated identifiers) and keep it visible to tracebacks."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"torch": torch}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def check_module_names(graph: Graph) -> None:
    """Module and block names must not shadow an attribute of the modules holding them.

    `training`, `forward`, `code`, `block`, `_modules`... are legal spec names but would break
    nn.Module (or the exported file), so they are reported at the name's position.
    """
    reserved = {*dir(CompiledModel), *dir(Block), *vars(Block(None)), "code", "archc_graph", "archc_heads",
                "_forward_train", "_forward_eval"}  # the generated methods of a model with train-only heads
    paths = {node.module: node.pos for node in graph if node.module is not None}
    paths.update((path, info.pos) for path, info in graph.scopes.items())
    for path, pos in paths.items():
        leaf = path.rpartition(".")[2]
        if leaf in reserved:
            raise SpecError(f"name '{leaf}' is taken by an attribute of torch's nn.Module; choose another name", pos)


def build_module(graph: Graph, init: InitSpec | None = None) -> CompiledModel:
    """Emit the nn.Module for a graph."""
    check_module_names(graph)
    sources = forward_sources(graph)
    methods: dict[str, Any] = {}
    tag = next(_counter)
    for name, src in sources.items():
        methods[name] = compile_function(src, name, f"<archc:{_class_name(graph.name)}:{name}:{tag}>")
    cls = type(_class_name(graph.name), (CompiledModel,), methods)
    model: CompiledModel = cls()
    inplace = inplace_nodes(graph)
    containers: dict[str, nn.Module] = {"": model}
    for node in graph:
        if node.module is None or node.shared:
            continue
        parent_path, _, leaf = node.module.rpartition(".")
        parent = _container(graph, containers, parent_path)
        op = ops.get(node.op)
        assert op is not None
        call = op.emit(node.args, [graph.shape_of(i) for i in node.inputs], node.shape, node.id in inplace)
        module = instantiate(call.target, call.args, call.kwargs)
        parent.add_module(leaf, module)
        if init is not None and op.init_kind is not None:
            apply_init(module, init.rule(op.init_kind))
    model.archc_graph = graph
    model.archc_heads = list(graph.heads)
    model.code = "\n".join(sources.values())
    return model


def _container(graph: Graph, containers: dict[str, nn.Module], path: str) -> nn.Module:
    if path in containers:
        return containers[path]
    parent_path, _, leaf = path.rpartition(".")
    parent = _container(graph, containers, parent_path)
    info = graph.scopes.get(path)
    block = Block(info.block if info else None)
    parent.add_module(leaf, block)
    containers[path] = block
    return block


def _class_name(name: str) -> str:
    """A Python class name from a spec name ('resnet_18' -> 'Resnet18'); always a valid identifier."""
    import keyword

    words = "".join(ch if ch.isalnum() and f"_{ch}".isidentifier() else " " for ch in name).split()
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Model"
    return text if text.isidentifier() and not keyword.iskeyword(text) else f"Model{text}"


@torch.no_grad()
def apply_init(module: nn.Module, rule: InitRule) -> None:
    """Initialise one layer's weight and bias by a spec rule."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    if rule.scheme == "torch" or weight is None:
        return
    init = nn.init
    scheme = rule.scheme
    if scheme == "kaiming_normal":
        init.kaiming_normal_(weight, a=rule.a, mode=rule.mode, nonlinearity=rule.nonlinearity)
    elif scheme == "kaiming_uniform":
        init.kaiming_uniform_(weight, a=rule.a, mode=rule.mode, nonlinearity=rule.nonlinearity)
    elif scheme == "xavier_normal":
        init.xavier_normal_(weight, gain=rule.gain)
    elif scheme == "xavier_uniform":
        init.xavier_uniform_(weight, gain=rule.gain)
    elif scheme == "normal":
        init.normal_(weight, rule.mean, rule.std)
    elif scheme == "trunc_normal":
        init.trunc_normal_(weight, mean=rule.mean, std=rule.std, a=-2 * rule.std, b=2 * rule.std)
    elif scheme == "uniform":
        init.uniform_(weight, rule.low, rule.high)
    elif scheme in ("zeros", "ones"):
        init.constant_(weight, 0.0 if scheme == "zeros" else 1.0)
    if bias is not None and rule.bias is not None:
        init.constant_(bias, rule.bias)


def probe_shapes(model: CompiledModel, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Run the model once recording every node's runtime shape (batch dimension dropped)."""
    graph = model.archc_graph
    source = ForwardWriter(graph).write("probe", "_probe")
    fn = compile_function(source, "_probe", f"<archc:{_class_name(graph.name)}:probe:{next(_counter)}>")
    shapes: dict[str, tuple[int, ...]] = {}

    def record(node_id: str, value: torch.Tensor) -> None:
        shapes[node_id] = tuple(value.shape[1:])

    fn.__globals__["record"] = record
    fn(model, x)
    return shapes


def count_tensors(model: nn.Module) -> tuple[int, int]:
    """(parameters, buffer elements), counting shared tensors once."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return params, buffers


__all__ = ["CompiledModel", "apply_init", "build_module", "count_tensors", "probe_shapes"]
