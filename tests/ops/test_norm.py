"""Ops of archc/ops/norm.py: batch, layer, group and local response normalisation (eval mode, with
non-trivial statistics and affine terms)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.ops.conftest import Reference, check_op, layer_of

CASES: list[tuple[str, list[int], Reference]] = [
    ("bn: {eps: 0.001}", [4, 5, 5], lambda m, x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, eps=1e-3)),
    ("bn", [6], lambda m, x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias)),
    ("layernorm: {dims: 2, eps: 1.0e-6}", [3, 4, 5], lambda m, x: F.layer_norm(x, (4, 5), m.weight, m.bias, 1e-6)),
    ("layernorm: {bias: false}", [7, 8], lambda m, x: F.layer_norm(x, (8,), m.weight, None)),
    ("groupnorm: 2", [4, 3, 3], lambda m, x: F.group_norm(x, 2, m.weight, m.bias)),
    ("lrn: {size: 3, alpha: 0.001}", [6, 4, 4], lambda m, x: F.local_response_norm(x, 3, 0.001, 0.75, 1.0)),
]


@pytest.mark.parametrize(("layer", "shape", "reference"), CASES, ids=[c[0] for c in CASES])
def test_norm_computes_the_torch_normalisation(layer: str, shape: list[int], reference: Reference) -> None:
    model = check_op(layer, shape, reference)
    with torch.no_grad():  # again with statistics and affine terms that are not the identity
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
        x = torch.randn(2, *shape)
        assert torch.equal(model(x), reference(layer_of(model), x))
