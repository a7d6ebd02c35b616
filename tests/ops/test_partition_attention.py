"""The ops of archc/ops/partition_attention.py (partition, unpartition, relative_attention) against
torchvision's MaxViT modules: static shapes, parameters, buffers and MACs equal runtime (MACs
equal FlopCounterMode / 2, attention products included), torchvision's keys and values, and
positioned errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.maxvit import (
    RelativePositionalMultiHeadAttention,
    SwapAxes,
    WindowDepartition,
    WindowPartition,
)

from archc import api
from archc.analysis.memory import buffer_bytes
from archc.errors import SpecError
from tests.conftest import compile_and_verify


def torchvision_partition(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """PartitionAttentionLayer's partition: grid mode partitions by H / size and swaps the axes."""
    if mode == "window":
        return WindowPartition()(x, size)
    return SwapAxes(-2, -3)(WindowPartition()(x, x.shape[2] // size))


def torchvision_departition(x: torch.Tensor, size: int, mode: str, height: int) -> torch.Tensor:
    if mode == "window":
        return WindowDepartition()(x, size, height // size, height // size)
    return WindowDepartition()(SwapAxes(-2, -3)(x), height // size, size, size)


def pair(shape: list[int], mode: str, size: int, height: int, width: int) -> str:
    """A spec cutting a map into groups and putting it back."""
    return (
        f"input: {shape}\nlayers:\n"
        f"  - {{partition: {{size: {size}, mode: {mode}}}, name: cut}}\n"
        f"  - unpartition: {{size: {size}, mode: {mode}, height: {height}, width: {width}}}\n"
    )


@pytest.mark.parametrize("mode", ["window", "grid"])
@pytest.mark.parametrize(
    ("channels", "height", "size"), [(4, 6, 2), (3, 6, 3), (2, 8, 2), (5, 4, 4)]
)
def test_partition_and_unpartition_are_torchvisions(
    mode: str, channels: int, height: int, size: int
) -> None:
    groups, tokens = height * height // size**2, size * size
    cut = compile_and_verify(
        f"input: [{channels}, {height}, {height}]\nlayers:\n"
        f"  - {{partition: {{size: {size}, mode: {mode}}}}}\n"
    )
    join = compile_and_verify(
        f"input: [{groups}, {tokens}, {channels}]\nlayers:\n"
        f"  - unpartition: {{size: {size}, mode: {mode}, height: {height}, "
        f"width: {height}}}\n"
    )
    assert cut.archc_graph.shape_of(cut.archc_graph.output) == (groups, tokens, channels)
    assert cut.archc_graph.total_params == cut.archc_graph.total_macs == 0
    x = torch.randn(2, channels, height, height)
    tokens_of_x = torchvision_partition(x, size, mode)
    assert torch.equal(cut(x), tokens_of_x)
    assert torch.equal(join(tokens_of_x), torchvision_departition(tokens_of_x, size, mode, height))
    assert torch.equal(join(cut(x)), x)


@pytest.mark.parametrize("mode", ["window", "grid"])
def test_a_non_square_map_round_trips(mode: str) -> None:
    """Grid mode on H != W: a size x size grid with steps H/size and W/size (torchvision's grid
    attention assumes square maps)."""
    model = compile_and_verify(pair([3, 4, 6], mode, 2, 4, 6))
    assert model.archc_graph.nodes["cut"].shape == (6, 4, 3)
    x = torch.randn(2, 3, 4, 6)
    assert torch.equal(model(x), x)


@pytest.mark.parametrize(
    ("groups", "size", "dim", "head_dim"),
    [(4, 2, 8, 4), (1, 3, 12, 4), (2, 7, 16, 16), (3, 1, 4, 1), (2, 2, 4, 1)],
)  # one token, one feature per head
def test_relative_attention_is_torchvisions(
    groups: int, size: int, dim: int, head_dim: int
) -> None:
    model = compile_and_verify(
        f"input: [{groups}, {size * size}, {dim}]\nlayers:\n"
        f"  - {{relative_attention: {head_dim}, name: attn}}\n"
    )
    theirs = RelativePositionalMultiHeadAttention(dim, head_dim, size * size)
    ours = model.attn
    assert [(k, v.shape, v.dtype) for k, v in ours.state_dict().items()] == [
        (k, v.shape, v.dtype) for k, v in theirs.state_dict().items()
    ]
    assert torch.equal(ours.relative_position_index, theirs.relative_position_index)
    with torch.no_grad():
        theirs.relative_position_bias_table.normal_()  # a wrong index or head order shows
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, groups, size * size, dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    graph = model.archc_graph
    assert counter.get_total_flops() == 2 * len(x) * graph.total_macs
    torch.testing.assert_close(out, theirs(x))
    heads = dim // head_dim
    assert (
        graph.total_params
        == sum(p.numel() for p in theirs.parameters())
        == 4 * dim * dim + 4 * dim + (2 * size - 1) ** 2 * heads
    )
    assert graph.total_buffers == size**4
    assert buffer_bytes(graph, "float32") == size**4 * 8  # the index is int64


def test_relative_attention_trains_its_bias_table() -> None:
    model = compile_and_verify(
        "input: [2, 4, 8]\nlayers:\n  - {relative_attention: 4, name: attn}\n"
    )
    model(torch.randn(2, 2, 4, 8)).square().sum().backward()
    grad = model.attn.relative_position_bias_table.grad
    assert grad is not None and grad.abs().sum() > 0


UNPARTITION = "unpartition: {size: 2, height: 6, width: 6}"


@pytest.mark.parametrize(
    ("shape", "item", "message"),
    [
        ([8, 6, 6], "partition: 4", "partition size 4 does not divide the 6x6 map"),
        ([8, 6, 9], "partition: {size: 3, mode: grid}", None),
        ([8, 36], "partition: 2", "partition needs a \\(C, H, W\\) map, got 8x36"),
        ([8, 4, 8], UNPARTITION, "8 groups of 4 tokens do not make a 6x6 map"),
        ([9, 9, 8], UNPARTITION, "groups of 9 tokens were not cut with partition size 2"),
        (
            [9, 4, 8],
            "unpartition: {size: 4, height: 6, width: 6}",
            "size 4 does not divide the 6x6",
        ),
        ([9, 4, 8], UNPARTITION, None),
        (
            [4, 8],
            "relative_attention: 4",
            "needs \\(G, P, D\\) token groups, got 4x8; a \\(C, H, W\\) map becomes them with",
        ),
        (
            [2, 6, 8],
            "relative_attention: 4",
            "needs square windows: 6 tokens per group is not size x",
        ),
        (
            [2, 4, 10],
            "relative_attention: 4",
            "head_dim=4 does not divide the token dimension D=10",
        ),
    ],
)
def test_bad_shapes_are_positioned_errors(shape: list[int], item: str, message: str | None) -> None:
    spec = f"input: {shape}\nlayers:\n  - {item}\n"
    if message is None:  # the shape is fine: it compiles
        api.compile_graph(spec)
        return
    with pytest.raises(SpecError, match=message) as info:
        api.compile_graph(spec)
    assert ":3:" in str(info.value)


@pytest.mark.parametrize(
    "item", ["relative_attention: 4", "unpartition: {size: 2, height: 4, width: 4}"]
)
def test_a_map_is_not_token_groups_even_when_its_sizes_fit(item: str) -> None:
    """A conv's 4x4x4 map would pass as 4 groups of 4 tokens: its known layout refuses it."""
    with pytest.raises(
        SpecError,
        match="needs \\(G, P, D\\) token groups from 'partition', "
        "but its input is 4x4x4 laid out C×H×W",
    ) as info:
        api.compile_graph(
            f"input: [3, 4, 4]\nlayers:\n  - {{conv: {{out: 4, kernel: 1}}}}\n  - {item}\n"
        )
    assert ":4:" in str(info.value)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{partition: {size: 2, mode: diagonal}}", "mode"),
        ("{partition: {size: 0}}", "size"),
        ("{relative_attention: {head_dim: 0}}", "head_dim"),
        ("{unpartition: {size: 2, height: 4}}", "width"),
    ],
)
def test_bad_arguments_are_positioned_errors(item: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        api.compile_graph(f"input: [4, 4, 4]\nlayers:\n  - {item}\n")
    assert ":3:" in str(info.value)


def test_maxvit_spec_names_the_stage_a_bad_input_size_breaks() -> None:
    """224 x k only: at 64 the first stage's 16x16 map does not split into 7x7 windows."""
    with pytest.raises(SpecError, match="partition size 7 does not divide the 16x16 map") as info:
        api.compile_graph("maxvit_t", image_size=64)
    assert "maxvit.yaml:" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "layer"),
    [
        ("input: [4096, 1024, 64]\nlayers:\n  - {relative_attention: 1, name: attn}\n", "attn"),
        ("input: [65536, 64]\nlayers:\n  - {self_attention: 64, name: attn}\n", "attn"),
    ],
)
def test_attention_scores_count_toward_the_memory_guard(spec: str, layer: str) -> None:
    """Small outputs, terabytes of scores (heads x L^2) inside the op: refused before a tensor
    exists, pointing at the attention layer, rather than failing (or swapping) in forward."""
    from archc.compiler.guard import check_fits, model_bytes

    graph = api.compile_graph(spec)
    weights, activations = model_bytes(graph)
    assert weights < 10**9 < 10**12 < activations
    with pytest.raises(SpecError, match=f"the largest layer is '{layer}'") as info:
        check_fits(graph, available=64 * 10**9)
    assert info.value.line == 3


@st.composite
def partition_attention_layers(draw: st.DrawFn) -> tuple[list[int], str]:
    """A small (C, H, W) map whose sides the partition divides, cut in either mode, attention
    with any head split, and put back."""
    size = draw(st.integers(1, 3))
    head_dim = draw(st.integers(1, 3))
    shape = [
        head_dim * draw(st.integers(1, 3)),
        size * draw(st.integers(1, 3)),
        size * draw(st.integers(1, 3)),
    ]
    mode = draw(st.sampled_from(["window", "grid"]))
    return shape, (
        f"  - {{partition: {{size: {size}, mode: {mode}}}}}\n"
        f"  - relative_attention: {head_dim}\n"
        f"  - unpartition: {{size: {size}, mode: {mode}, height: {shape[1]}, "
        f"width: {shape[2]}}}\n"
    )


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(partition_attention_layers())
def test_static_shapes_params_and_macs_equal_runtime(case: tuple[list[int], str]) -> None:
    """Any map the partition divides, either mode, any head split: shapes, parameters, buffers
    (compile_and_verify) and MACs (FlopCounterMode) equal runtime, and the map comes back."""
    shape, items = case
    model = compile_and_verify(f"input: {shape}\nlayers:\n{items}").eval()
    x = torch.randn(1, *shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert counter.get_total_flops() == 2 * model.archc_graph.total_macs
    assert out.shape == x.shape


@pytest.mark.parametrize(("mode", "field"), [("window", 3 + 3), ("grid", 3 + 12)])
def test_a_partitions_field_is_its_groups(mode: str, field: int) -> None:
    """After a 3x3 conv (field 3) on 16x16, a token sees its group: a 4x4 window (+3), or a 4x4
    grid of positions 4 apart (+12); the field comes back through unpartition."""
    from archc.analysis.receptive import receptive_fields

    graph = api.compile_graph(
        "input: [8, 16, 16]\nlayers:\n  - {conv: {out: 8, kernel: 3, padding: 1}}\n"
        f"  - {{partition: {{size: 4, mode: {mode}}}}}\n  - relative_attention: 4\n"
        f"  - {{unpartition: {{size: 4, mode: {mode}, height: 16, width: 16}}, name: back}}\n"
    )
    back = receptive_fields(graph)["back"]
    assert back is not None and back.size_text() == str(field) and back.stride_text() == "1"


def test_report_says_a_field_is_unknown_past_a_reshape_not_that_there_is_no_map() -> None:
    from archc.analysis.report import footer, totals

    graph = api.compile_graph(
        "input: [3, 8, 8]\nlayers:\n  - {conv: {out: 4, kernel: 3}}\n  - reshape: [4, 36]\n"
    )
    text = "\n".join(footer(totals(graph)))
    assert "receptive field: — (unknown past a layer that reshapes the map)" in text
