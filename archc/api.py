"""The Python API: `load`, `compile_graph`, `build`, `analyze`, for scripts and notebooks."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.compiler.expand import Limits, expand
from archc.compiler.ir import Graph
from archc.compiler.validate import LoadedSpec
from archc.compiler.validate import load as _load
from archc.errors import SpecError

if TYPE_CHECKING:
    from torch import nn

    from archc.compiler.emit import CompiledModel

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
    from archc.compiler.validate import validate

    return validate(spec.document, {**spec.overrides, **overrides}, spec.plugins, spec.variant)


def with_input(spec: LoadedSpec, input_shape: tuple[int, ...] | list[int] | None) -> LoadedSpec:
    """A copy of `spec` that takes `input_shape` (what `--input` does); refuses a change of rank.

    `--input 1,28` on an image spec would silently compile a 1-D network: an input override may
    change sizes and channels, never the kind of network.
    """
    if input_shape is None:
        return spec
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != len(spec.input_shape) or any(d < 1 for d in shape):
        given, declared = ",".join(map(str, shape)), ",".join(map(str, spec.input_shape))
        raise SpecError(
            f"--input {given} does not fit {spec.name}: it takes "
            f"{len(spec.input_shape)} positive sizes like its input {declared}; "
            "an input override changes sizes, not the number of dimensions"
        )
    return dataclasses.replace(spec, input_shape=shape)


def fingerprint(spec: LoadedSpec, input_shape: tuple[int, ...] | list[int] | None = None) -> str:
    """What a run records as its spec hash: the spec text, its
    overrides and an `--input` override."""
    if input_shape is None:
        return spec.source_hash
    return hashlib.sha256(f"{spec.source_hash}:input={list(input_shape)}".encode()).hexdigest()


def compile_graph(
    spec: SpecLike,
    *,
    input_shape: tuple[int, ...] | None = None,
    limits: Limits | None = None,
    **overrides: Any,
) -> Graph:
    """Validate, expand and infer: the static IR graph, without importing torch."""
    return expand(with_input(_loaded(spec, overrides), input_shape), limits)


def build(
    spec: SpecLike,
    *,
    input_shape: tuple[int, ...] | None = None,
    limits: Limits | None = None,
    force: bool = False,
    **overrides: Any,
) -> CompiledModel:
    """Compile a spec to an nn.Module (initialised by the spec's `init:` rules).

    Refuses (SpecError) a model whose weights and activations would not fit in available
    memory unless `force=True`.
    """
    from archc.compiler.emit import build_module
    from archc.compiler.guard import check_fits

    loaded = _loaded(spec, overrides)
    graph = compile_graph(loaded, input_shape=input_shape, limits=limits)
    if not force:
        check_fits(graph)
    return build_module(graph, loaded.model.init, str(loaded.path))


@dataclass(repr=False)
class Analysis:
    """Static analysis of a spec: per-node rows and totals as data, and the per-layer report of
    `archc report` when printed (`print(analysis)`, or as HTML in a notebook); `repr` is one line.

    `depth` folds deeper blocks, `columns` picks the table's columns
    (archc.analysis.report.COLUMN_NAMES), `batch_size` and `dtype` set the memory figures.
    """

    graph: Graph
    depth: int | None = None
    columns: tuple[str, ...] | None = None
    batch_size: int = 1
    dtype: str = "float32"

    def __repr__(self) -> str:
        from archc.analysis.report import si
        from archc.ops.base import fmt_shape

        g = self.graph
        return (
            f"<Analysis {g.name}: {fmt_shape(g.input_shape)} -> {fmt_shape(g.shape_of(g.output))}, "
            f"{si(g.total_params)} params, {si(g.total_macs)} MACs, {len(g.nodes)} nodes>"
        )

    def __str__(self) -> str:
        return self.render("table")

    def _repr_html_(self) -> str:
        return self.render("html")

    def render(self, fmt: str = "table", width: int | None = None) -> str:
        """The per-layer report in one of archc.analysis.report.FORMATS
        (table, markdown, csv, json, html)."""
        from archc.analysis.report import render, report_rows, totals

        rows = report_rows(self.graph, self.depth, self.batch_size, self.dtype)
        return render(
            rows, totals(self.graph, self.batch_size, self.dtype), fmt, width, columns=self.columns
        )

    def rows(self) -> list[dict[str, Any]]:
        from archc.ops.base import layout_text

        return [
            {
                "name": n.id,
                "op": n.op,
                "label": n.label,
                "inputs": list(n.inputs),
                "shape": list(n.shape),
                "params": n.params,
                "buffers": n.buffers,
                "macs": n.macs,
                "other_ops": n.other_ops,
                "module": n.module,
                "scope": n.scope,
                "line": n.pos.line if n.pos else None,
                "layout": layout_text(n.layout) or None,
            }
            for n in self.graph
        ]

    def totals(self) -> dict[str, Any]:
        g = self.graph
        return {
            "name": g.name,
            "input": list(g.input_shape),
            "output": list(g.shape_of(g.output)),
            "params": g.total_params,
            "buffers": g.total_buffers,
            "macs": g.total_macs,
            "flops": 2 * g.total_macs,
            "macs_with_train_heads": g.macs(include_train_only=True),
            "nodes": len(g.nodes),
            "depth": g.depth,
            "heads": [
                {
                    "name": h.name,
                    "node": h.node,
                    "loss_weight": h.loss_weight,
                    "train_only": h.train_only,
                }
                for h in g.heads
            ],
        }


def analyze(spec: SpecLike, **overrides: Any) -> Analysis:
    """Static per-node table (shapes, params, MACs) of a spec; no forward pass, no torch."""
    return Analysis(compile_graph(spec, **overrides))


def summary(
    spec_or_model: SpecLike | nn.Module,
    *,
    depth: int | None = None,
    columns: Sequence[str] | None = None,
    batch_size: int = 1,
    dtype: str = "float32",
    input_shape: tuple[int, ...] | None = None,
    **overrides: Any,
) -> Analysis:
    """The per-layer report of a spec (path, YAML text, loaded spec) or of a model archc built:
    `print(archc.summary(...))` shows the table, as torchinfo's `summary`
    does, with no forward pass."""
    from archc.analysis.report import columns as pick_columns

    graph = getattr(spec_or_model, "archc_graph", None)
    if graph is None:
        if not isinstance(spec_or_model, (str, Path, LoadedSpec)):
            from archc.errors import ArchcError

            raise ArchcError(
                "summary() reads archc's static analysis: give a spec or a "
                f"model built by archc, not a {type(spec_or_model).__name__} "
                "(for any nn.Module, torchinfo.summary runs a forward)"
            )
        graph = compile_graph(spec_or_model, input_shape=input_shape, **overrides)
    chosen = tuple(c.name for c in pick_columns(columns)) if columns else None
    analysis = Analysis(graph, depth, chosen, batch_size, dtype)
    analysis.render("json")  # bad depth, batch size or dtype fail here, not when printed
    return analysis
