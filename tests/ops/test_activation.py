"""Ops of archc/ops/activation.py, each against torch's function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archc import api
from tests.ops.conftest import Reference, check_op

CASES: list[tuple[str, Reference]] = [
    ("relu", lambda m, x: F.relu(x)),
    ("relu6", lambda m, x: F.relu6(x)),
    ("leaky_relu: 0.2", lambda m, x: F.leaky_relu(x, 0.2)),
    ("gelu: {approximate: tanh}", lambda m, x: F.gelu(x, approximate="tanh")),
    ("silu", lambda m, x: F.silu(x)),
    ("sigmoid", lambda m, x: torch.sigmoid(x)),
    ("tanh", lambda m, x: torch.tanh(x)),
    ("softmax: -1", lambda m, x: F.softmax(x, -1)),
    ("hardswish", lambda m, x: F.hardswish(x)),
    ("hardsigmoid", lambda m, x: F.hardsigmoid(x)),
    ("mish", lambda m, x: F.mish(x)),
]


@pytest.mark.parametrize(("layer", "reference"), CASES, ids=[c[0] for c in CASES])
def test_activation_computes_the_torch_function(layer: str, reference: Reference) -> None:
    check_op(layer, [3, 4, 5], reference)


def test_hard_activations_are_ops_of_their_own() -> None:
    """hardswish and hardsigmoid are not swish and sigmoid: each emits its own torch module."""
    for name, module in (
        ("hardswish", torch.nn.Hardswish),
        ("hardsigmoid", torch.nn.Hardsigmoid),
        ("mish", torch.nn.Mish),
    ):
        model = api.build(f"input: [4]\nlayers:\n  - {name}\n")
        assert [type(m) for m in model.modules() if not list(m.children())] == [module]
