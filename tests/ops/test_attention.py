"""The self_attention op (archc/ops/attention.py): nn.MultiheadAttention on a (L, D) sequence with
torchvision ViT's keys; MACs (projections and both attention products) equal FlopCounterMode / 2."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from archc import api
from archc.errors import SpecError
from tests.conftest import compile_and_verify


@pytest.mark.parametrize(("length", "dim", "heads"), [(5, 8, 2), (17, 12, 3), (1, 4, 1)])
def test_self_attention_is_nn_multihead_attention(length: int, dim: int, heads: int) -> None:
    model = compile_and_verify(
        f"input: [{length}, {dim}]\nlayers:\n  - {{self_attention: {heads}, name: attn}}\n"
    )
    assert [k for k in model.state_dict()] == [
        "attn.in_proj_weight",
        "attn.in_proj_bias",
        "attn.out_proj.weight",
        "attn.out_proj.bias",
    ]
    reference = nn.MultiheadAttention(dim, heads, batch_first=True)
    reference.load_state_dict(model.attn.state_dict())
    x = torch.randn(3, length, dim)
    # the math kernel: CPU's fused attention kernel is invisible to FlopCounterMode (torch 2.14)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert counter.get_total_flops() == 2 * len(x) * model.archc_graph.total_macs
    torch.testing.assert_close(out, reference(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize(
    ("shape", "item", "message"),
    [
        ([4, 6, 6], "self_attention: 2", "needs a \\(L, D\\) token sequence, got 4x6x6"),
        ([5, 10], "self_attention: 3", "heads=3 does not divide the model dimension D=10"),
    ],
)
def test_self_attention_on_a_wrong_layout_is_a_positioned_error(
    shape: list[int], item: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message) as info:
        api.build(f"input: {shape}\nlayers:\n  - {item}\n")
    assert ":3:" in str(info.value)
