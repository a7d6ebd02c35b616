"""Ops of archc/ops/linear.py: stochastic depth (the other linear-module ops are exercised by every
zoo spec and tests/test_properties.py)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from archc import api
from archc.errors import SpecError
from tests.conftest import compile_and_verify


@pytest.mark.parametrize(("p", "mode"), [(0.3, "row"), (0.5, "batch"), (0.0, "row"), (1.0, "row")])
def test_stochastic_depth_is_torchvisions(p: float, mode: str) -> None:
    """Same random draws as torchvision.ops.StochasticDepth in training; the identity in eval."""
    model = compile_and_verify(
        f"input: [4, 3, 3]\nlayers:\n  - stochastic_depth: {{p: {p}, mode: {mode}}}\n"
    )
    reference = torchvision.ops.StochasticDepth(p, mode)
    x = torch.randn(32, 4, 3, 3)
    for training in (True, False):
        model.train(training)
        reference.train(training)
        torch.manual_seed(3)
        ours = model(x)
        torch.manual_seed(3)
        assert torch.equal(ours, reference(x))
    assert torch.equal(model.eval()(x), x)
    with FlopCounterMode(display=False) as counter:
        model.train()(x)
    assert counter.get_total_flops() == 0 and not model.state_dict()


def test_stochastic_depth_probability_from_the_block_index() -> None:
    """torchvision's linear schedule: p = 0.2 * block / blocks, written as an expression."""
    text = """
input: [4, 3, 3]
layers:
  - {stochastic_depth: {p: "${0.2 * i / 4}"}, repeat: 4}
"""
    graph = api.compile_graph(text)
    assert [n.args.p for n in graph] == [0.2 * i / 4 for i in range(4)]  # the same float arithmetic


def test_stochastic_depth_probability_is_checked() -> None:
    with pytest.raises(SpecError, match="less than or equal to 1") as err:
        api.compile_graph("input: [4]\nlayers:\n  - stochastic_depth: 1.5\n")
    assert err.value.line == 3


def test_linear_on_a_channels_last_map_is_nn_linear_on_the_last_dimension() -> None:
    from tests.ops.conftest import check_op

    check_op(
        "linear: {out: 6, channels_last: true}",
        [3, 4, 5],
        lambda m, x: torch.nn.functional.linear(x, m.weight, m.bias),
        exact=False,
    )
