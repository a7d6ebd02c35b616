"""Swin's ops (archc/ops/window_attention.py) against torchvision's own layers: shifted-window
attention (v1 bias table, v2 cosine attention with the position-bias MLP) and patch merging (v1,
v2) on channels-last maps. Static shapes, params and buffers equal runtime (compile_and_verify),
MACs equal FlopCounterMode / 2, the keys are torchvision's (its layer loads them strictly) and the
outputs are its outputs; windows that do not tile the map, shifts that a whole-map window cancels
and odd sizes included. Bad layouts and arguments are positioned errors."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import swin_transformer as tv

from archc import api
from archc.compiler.codegen import class_name
from archc.compiler.export import export_python
from archc.compiler.guard import check_fits, model_bytes
from archc.errors import SpecError
from archc.ops.base import numel
from tests.conftest import compile_and_verify

# (H, W, C, heads, window, shift): shifted and masked; padded to whole windows and not square;
# one window covers the padded map (the shift is dropped, as torchvision does)
WINDOWS = [
    (14, 14, 12, 3, [7, 7], [3, 3]),
    (9, 11, 8, 2, [4, 5], [2, 2]),
    (4, 4, 8, 2, [7, 7], [3, 3]),
]


def flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def one_layer(shape: list[int], item: str) -> str:
    return f"input: {shape}\nlayers:\n  - {item}\n"


def keys_and_shapes(module: torch.nn.Module) -> list[tuple[str, torch.Size]]:
    return [(k, v.shape) for k, v in module.state_dict().items()]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("h", "w", "c", "heads", "window", "shift"), WINDOWS)
def test_window_attention_is_torchvisions(
    version: int, h: int, w: int, c: int, heads: int, window: list[int], shift: list[int]
) -> None:
    op = "shifted_window_attention" if version == 1 else "shifted_window_attention_v2"
    item = f"{{{op}: {{heads: {heads}, window: {window}, shift: {shift}}}}}"
    model = compile_and_verify(one_layer([h, w, c], item)).eval()
    reference = tv.ShiftedWindowAttention if version == 1 else tv.ShiftedWindowAttentionV2
    layer = reference(c, window, shift, heads)
    mine = model.get_submodule("0")
    assert keys_and_shapes(mine) == keys_and_shapes(layer)
    layer.load_state_dict(mine.state_dict(), strict=True)
    x = torch.randn(2, h, w, c)
    with torch.no_grad():
        torch.testing.assert_close(model(x), layer.eval()(x), rtol=1e-5, atol=1e-5)
    # per sample; v2's position-bias MLP runs once per forward, so count one sample
    assert flops(model, x[:1]) == 2 * model.archc_graph.total_macs == flops(layer, x[:1])


@pytest.mark.parametrize(
    ("norm", "reference"), [("before", tv.PatchMerging), ("after", tv.PatchMergingV2)]
)
@pytest.mark.parametrize(("h", "w"), [(4, 6), (5, 7)])
def test_patch_merging_is_torchvisions(norm: str, reference: type, h: int, w: int) -> None:
    model = compile_and_verify(one_layer([h, w, 6], f"{{patch_merging: {{norm: {norm}}}}}")).eval()
    assert model.archc_graph.shape_of(model.archc_graph.output) == (-(-h // 2), -(-w // 2), 12)
    layer = reference(6)
    layer.load_state_dict(model.get_submodule("0").state_dict(), strict=True)
    assert list(model.state_dict()) == [f"0.{k}" for k in layer.state_dict()]
    assert list(layer.state_dict()) == ["reduction.weight", "norm.weight", "norm.bias"]
    x = torch.randn(2, h, w, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), layer.eval()(x))
    assert flops(model, x) == 2 * len(x) * model.archc_graph.total_macs


@st.composite
def swin_layers(draw: st.DrawFn) -> tuple[list[int], str]:
    """A small channels-last map and one Swin layer with any legal arguments."""
    heads = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 9)), draw(st.integers(1, 9)), heads * draw(st.integers(1, 3))]
    if draw(st.booleans()):
        norm = draw(st.sampled_from(["before", "after"]))
        return shape, f"{{patch_merging: {{norm: {norm}}}}}"
    op = draw(st.sampled_from(["shifted_window_attention", "shifted_window_attention_v2"]))
    low = 2 if op.endswith("v2") else 1
    window = [draw(st.integers(low, 6)), draw(st.integers(low, 6))]
    shift = [draw(st.integers(0, w - 1)) for w in window]
    bias = str(draw(st.booleans())).lower()
    args = f"heads: {heads}, window: {window}, shift: {shift}, qkv_bias: {bias}"
    return shape, f"{{{op}: {{{args}}}}}"


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(swin_layers())
def test_static_shapes_params_and_macs_equal_runtime(case: tuple[list[int], str]) -> None:
    """Any map size against any window (padded, shifted or not), either version, either merging."""
    model = compile_and_verify(one_layer(*case))
    assert flops(model, torch.randn(1, *case[0])) == 2 * model.archc_graph.total_macs


MIXED = """
input: [8, 8, 8]
layers:
  - {shifted_window_attention: {heads: 2, window: 4, shift: 2}}
  - {shifted_window_attention_v2: {heads: 2, window: 4, shift: 2, qkv_bias: false}}
  - {patch_merging: {norm: before}}
  - {patch_merging: {norm: after, eps: 1.0e-6}}
"""


def test_exported_source_needs_only_torch_and_scripts(tmp_path: Path) -> None:
    """Both versions in one model: the generated classes once each, runnable without archc, and
    TorchScript computes what the eager model computes."""
    model = api.build(MIXED).eval()
    source = export_python(model.archc_graph, None, "mixed.yaml")
    assert "archc" not in source.replace("generated by archc", "")
    for name in (
        "def shifted_window_attention(",
        "class PatchMergingV2(",
        "class ShiftedWindowAttentionV2(",
    ):
        assert source.count(name) == 1, name
    namespace: dict[str, Any] = {}
    exec(compile(source, str(tmp_path / "mixed.py"), "exec"), namespace)
    exported = namespace[class_name(model.archc_graph.name)]().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        torch.testing.assert_close(exported(x), model(x))
        torch.testing.assert_close(scripted(x), model(x))


ATTENTION = "shifted_window_attention"
LAYOUT = "needs a channels-last \\(H, W, C\\) map, got"


@pytest.mark.parametrize(
    ("shape", "item", "message"),
    [
        ([64, 8], f"{{{ATTENTION}: {{heads: 2, window: 4}}}}", f"{LAYOUT} 64x8"),
        ([8, 8, 8, 8], "patch_merging", f"{LAYOUT} 8x8x8x8; a \\(C, H, W\\) map becomes one with"),
        (
            [8, 8, 12],
            f"{{{ATTENTION}: {{heads: 5, window: 4}}}}",
            "heads=5 does not divide the 12 channels",
        ),
        (
            [8, 8, 12],
            f"{{{ATTENTION}: {{heads: 3, window: 4, shift: 4}}}}",
            "shift \\[4, 4\\] must lie in 0 .. window - 1",
        ),
        (
            [8, 8, 12],
            f"{{{ATTENTION}: {{heads: 3, window: [4, 4, 4]}}}}",
            "window takes an int or \\[height, width\\]",
        ),
        (
            [8, 8, 12],
            f"{{{ATTENTION}: {{heads: 3, window: 0}}}}",
            "needs a window of at least 1 in each",
        ),
        (
            [8, 8, 12],
            f"{{{ATTENTION}_v2: {{heads: 3, window: [4, 1]}}}}",
            "needs a window of at least 2 in each dimension \\(its position bias divides",
        ),
        (
            [8, 8, 12],
            f"{{{ATTENTION}: {{heads: 3, window: 4, version: 2}}}}",
            "unknown argument 'version' for shifted_window_attention",
        ),
    ],
)
def test_bad_layouts_and_arguments_are_positioned_errors(
    shape: list[int], item: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message) as info:
        api.compile_graph(one_layer(shape, item))
    assert ":3:" in str(info.value)


def test_a_window_attention_whose_scores_cannot_fit_is_refused_at_its_line() -> None:
    """A 0.5 GB map in 64x64 windows: 1.6 TB of scores inside the layer, refused by the memory
    guard on a 64 GB machine although its outputs and weights fit."""
    item = f"{{{ATTENTION}: {{heads: 2, window: 64}}}}"
    graph = api.compile_graph(one_layer([4096, 4096, 8], item))
    weights, activations = model_bytes(graph)
    assert weights + 4 * sum(numel(n.shape) for n in graph) < 2**30 < 2**40 < activations
    with pytest.raises(SpecError, match="refusing to allocate") as info:
        check_fits(graph, available=64 * 2**30)
    assert ":3:" in str(info.value)


def test_a_refusal_for_buffers_names_them() -> None:
    """A 256x256 window keeps a (65536, 65536) relative-position index: 4.3e9 buffer values the
    guard's message counts as buffers, not weights."""
    graph = api.compile_graph(one_layer([8, 8, 8], f"{{{ATTENTION}: {{heads: 2, window: 256}}}}"))
    with pytest.raises(SpecError, match="of weights and buffers and") as info:
        check_fits(graph, available=8 * 2**30)
    assert "(522,530 params, 4,294,967,296 buffer values)" in str(info.value)
