"""Shared check of the per-op test files: one op in a spec against the torch code it stands for."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import compile_and_verify

# the torch computation of one layer, given the layer's module (None for a function) and the input
Reference = Callable[[nn.Module | None, torch.Tensor], torch.Tensor]


def layer_of(model: nn.Module) -> nn.Module | None:
    """The op's own module (the last leaf module), or None when it is a function in forward."""
    leaves = [m for m in model.modules() if not list(m.children()) and m is not model]
    return leaves[-1] if leaves else None


def check_op(
    layer: str, shape: list[int], reference: Reference, *, exact: bool = True
) -> nn.Module:
    """Build `input: shape, layers: [layer]`: static shapes, parameters and buffers equal runtime
    (compile_and_verify), MACs equal FlopCounterMode / 2, and the output equals `reference`."""
    model = compile_and_verify(f"input: {shape}\nlayers:\n  - {layer}\n").eval()
    x = torch.randn(2, *shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert (
        counter.get_total_flops() == 2 * len(x) * model.archc_graph.total_macs
    )  # MACs are per sample
    with torch.no_grad():
        want = reference(layer_of(model), x)
    if exact:
        assert torch.equal(out, want)
    else:
        torch.testing.assert_close(out, want)
    return model
