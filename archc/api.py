"""The Python API: `load`, `compile_graph`, `build`, `analyze`, for scripts and notebooks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.expand import Limits, expand
from archc.ir import Graph
from archc.validate import LoadedSpec
from archc.validate import load as _load

if TYPE_CHECKING:
    from archc.emit import CompiledModel

SpecLike = LoadedSpec | str | Path


def load(spec: str | Path, *, plugins: tuple[str, ...] = (), **overrides: Any) -> LoadedSpec:
    """Load and validate a spec file (or YAML text); keyword arguments override its parameters."""
    return _load(spec, overrides, tuple(plugins))


def _loaded(spec: SpecLike, overrides: dict[str, Any]) -> LoadedSpec:
    if isinstance(spec, LoadedSpec):
        if overrides:
            return _load_with(spec, overrides)
        return spec
    return _load(spec, overrides)


def _load_with(spec: LoadedSpec, overrides: dict[str, Any]) -> LoadedSpec:
    from archc.validate import validate

    return validate(spec.document, {**spec.overrides, **overrides}, spec.plugins, spec.variant)


def compile_graph(spec: SpecLike, *, input_shape: tuple[int, ...] | None = None, limits: Limits | None = None,
                  **overrides: Any) -> Graph:
    """Validate, expand and infer: the static IR graph, without importing torch."""
    loaded = _loaded(spec, overrides)
    if input_shape is not None:
        loaded.input_shape = tuple(input_shape)
    return expand(loaded, limits)


def build(spec: SpecLike, *, input_shape: tuple[int, ...] | None = None, limits: Limits | None = None,
          force: bool = False, **overrides: Any) -> CompiledModel:
    """Compile a spec to an nn.Module (initialised by the spec's `init:` rules).

    Refuses (SpecError) a model whose weights and activations would not fit in available
    memory unless `force=True`.
    """
    from archc.emit import build_module
    from archc.guard import check_fits

    loaded = _loaded(spec, overrides)
    graph = compile_graph(loaded, input_shape=input_shape, limits=limits)
    if not force:
        check_fits(graph)
    return build_module(graph, loaded.model.init)


@dataclass
class Analysis:
    """Per-node static analysis of a spec: rows for a table, and totals."""

    graph: Graph

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"name": n.id, "op": n.op, "label": n.label, "inputs": list(n.inputs), "shape": list(n.shape),
             "params": n.params, "buffers": n.buffers, "macs": n.macs, "other_ops": n.other_ops,
             "module": n.module, "scope": n.scope, "line": n.pos.line if n.pos else None}
            for n in self.graph
        ]

    def totals(self) -> dict[str, Any]:
        g = self.graph
        return {"name": g.name, "input": list(g.input_shape), "output": list(g.shape_of(g.output)),
                "params": g.total_params, "buffers": g.total_buffers, "macs": g.total_macs, "flops": 2 * g.total_macs,
                "macs_with_train_heads": g.macs(include_train_only=True), "nodes": len(g.nodes), "depth": g.depth,
                "heads": [{"name": h.name, "node": h.node, "loss_weight": h.loss_weight, "train_only": h.train_only} for h in g.heads]}


def analyze(spec: SpecLike, **overrides: Any) -> Analysis:
    """Static per-node table (shapes, params, MACs) of a spec; no forward pass, no torch."""
    return Analysis(compile_graph(spec, **overrides))
