"""Each fact about an op lives on its class: every registered op, plugins included, declares the
facts the memory model, the diagram and the depth read (archc.ops.base.DECLARED_FACTS), and those
stages read them from the op, never from a table of op names."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from archc import ops
from archc.ops.base import DECLARED_FACTS, Autograd, Op, Side

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIR = REPO / "examples" / "plugin_op"


def declares(cls: type[Op], fact: str) -> bool:
    """The fact is set by the op's own class or a family base, not inherited from Op's default."""
    return any(
        fact in vars(klass) for klass in cls.__mro__ if klass is not Op and issubclass(klass, Op)
    )


@pytest.fixture(scope="module")
def registered() -> Iterator[dict[str, Op]]:
    """The registry with the example plugin loaded; unloaded
    afterwards (other tests list the ops)."""
    before = dict(ops.REGISTRY), dict(ops._CANONICAL)
    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        ops.load_plugin("archc_scale_op")
    finally:
        sys.path.remove(str(PLUGIN_DIR))
    yield ops.canonical()
    sys.modules.pop("archc_scale_op", None)
    ops.REGISTRY.clear()
    ops.REGISTRY.update(before[0])
    ops._CANONICAL.clear()
    ops._CANONICAL.update(before[1])


def test_the_plugin_example_is_checked_too(registered: dict[str, Op]) -> None:
    assert "scale" in registered


@pytest.mark.parametrize("fact", DECLARED_FACTS)
def test_every_registered_op_declares_each_fact(fact: str, registered: dict[str, Op]) -> None:
    missing = [name for name, op in registered.items() if not declares(type(op), fact)]
    assert not missing, f"ops that do not declare {fact!r}: {missing}"


def test_declared_facts_are_well_formed(registered: dict[str, Op]) -> None:
    for name, op in registered.items():
        assert isinstance(op.autograd, Autograd), name
        assert all(isinstance(side, Side) and side.count > 0 for side in op.autograd.side), name
        assert not (op.autograd.view and op.autograd.side), name  # a view allocates nothing
        assert re.fullmatch(r"#[0-9a-f]{6}", op.colour), name
        assert isinstance(op.weighted, bool), name
        assert not op.weighted or op.init_kind in ("conv", "linear"), (
            name
        )  # depth counts conv and linear layers


def test_no_stage_keeps_a_table_of_op_names() -> None:
    """memory.py and ir.py read per-op facts from the op class; the diagram its colours."""
    names = sorted(ops.canonical(), key=len, reverse=True)
    alternatives = "|".join(map(re.escape, names))
    quoted = re.compile(rf"""["']({alternatives})["']""")
    for module in ("analysis/memory.py", "compiler/ir.py"):
        text = (REPO / "archc" / module).read_text()
        assert not quoted.findall(text), (
            f"archc/{module} names ops: {sorted(set(quoted.findall(text)))}"
        )
    diagram = (REPO / "archc" / "analysis" / "diagram.py").read_text()
    assert "#dbe8f6" not in diagram and ".colour" in diagram


def test_a_plugin_op_without_declarations_still_works_with_the_defaults(write_spec) -> None:
    """The defaults keep a third-party op usable (saves its input, white, not weighted)."""
    from archc import api
    from archc.analysis.memory import training_memory

    @ops.register
    class Undeclared(Op):
        name = "test_undeclared_op"
        is_module = False

        def expression(self, args, inputs):  # type: ignore[no-untyped-def]
            return inputs[0]

    try:
        graph = api.compile_graph(
            write_spec("input: [4]\nlayers: [test_undeclared_op, {linear: 2}]\n")
        )
        assert training_memory(graph).peak["sgd"] > 0 and graph.depth == 1
    finally:
        del ops.REGISTRY["test_undeclared_op"]
        ops._CANONICAL.pop("test_undeclared_op", None)
