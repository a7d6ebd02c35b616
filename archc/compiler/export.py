"""`archc export`: the model's source (`--to python`), or a deployable artifact of it."""

from __future__ import annotations

from archc.compiler.codegen import module_source
from archc.compiler.ir import Graph
from archc.compiler.spec import InitSpec


def export_python(graph: Graph, init: InitSpec | None, source_path: str) -> str:
    """The source `archc.build` executes: a standalone module needing only PyTorch."""
    return module_source(graph, init, source_path)


__all__ = ["export_python"]
