"""Ops of archc/ops/norm.py: batch, layer, group and local response normalisation (eval mode, with
non-trivial statistics and affine terms)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.convnext import LayerNorm2d

from archc import api
from archc.errors import SpecError
from tests.ops.conftest import Reference, check_op, layer_of

CASES: list[tuple[str, list[int], Reference]] = [
    (
        "bn: {eps: 0.001}",
        [4, 5, 5],
        lambda m, x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, eps=1e-3),
    ),
    ("bn", [6], lambda m, x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias)),
    (
        "layernorm: {dims: 2, eps: 1.0e-6}",
        [3, 4, 5],
        lambda m, x: F.layer_norm(x, (4, 5), m.weight, m.bias, 1e-6),
    ),
    ("layernorm: {bias: false}", [7, 8], lambda m, x: F.layer_norm(x, (8,), m.weight, None)),
    (
        "layernorm: {dims: 1, eps: 1.0e-6}",
        [3, 4, 5],
        lambda m, x: F.layer_norm(x, (5,), m.weight, m.bias, 1e-6),
    ),
    ("layernorm2d: {eps: 1.0e-6}", [5, 3, 4], lambda m, x: LayerNorm2d.forward(m, x)),
    ("groupnorm: 2", [4, 3, 3], lambda m, x: F.group_norm(x, 2, m.weight, m.bias)),
    (
        "lrn: {size: 3, alpha: 0.001}",
        [6, 4, 4],
        lambda m, x: F.local_response_norm(x, 3, 0.001, 0.75, 1.0),
    ),
]


@pytest.mark.parametrize(("layer", "shape", "reference"), CASES, ids=[c[0] for c in CASES])
def test_norm_computes_the_torch_normalisation(
    layer: str, shape: list[int], reference: Reference
) -> None:
    model = check_op(layer, shape, reference)
    with torch.no_grad():  # again with statistics and affine terms that are not the identity
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
        x = torch.randn(2, *shape)
        assert torch.equal(model(x), reference(layer_of(model), x))


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (
            "layernorm",
            [8, 5, 6],
            "say which: 'dims: 1' for a channels-last \\(H, W, C\\) map, 'dims: 3'",
        ),
        ("layernorm2d", [8, 5], "layernorm2d needs a \\(C, H, W\\) map, got 8x5"),
    ],
)
def test_layernorm_on_a_layout_it_cannot_tell_is_an_error(
    layer: str, shape: list[int], message: str
) -> None:
    """A (C, H, W) map must not be normalised over its width by default."""
    with pytest.raises(SpecError, match=message):
        api.build(f"input: {shape}\nlayers:\n  - {layer}\n")


def test_layernorm2d_has_torchvisions_keys_and_loads_its_state() -> None:
    reference = LayerNorm2d(5, eps=1e-6)
    model = api.build("input: [5, 3, 4]\nlayers:\n  - {layernorm2d: {eps: 1.0e-6}, name: norm}\n")
    model.norm.load_state_dict(reference.state_dict(), strict=True)
    assert [k for k in model.state_dict()] == ["norm.weight", "norm.bias"]
