"""The `parameter` op (archc/ops/parameter.py): learned tensors held as nn.Parameters named after
the item, where torchvision keeps them (ViT's class_token and encoder.pos_embedding, ConvNeXt's
layer_scale), combined with the input by add, multiply or concat; static shapes and params equal
runtime, varying shapes across calls of one block become constructor arguments."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc import api
from archc.compiler.spec import InitScheme
from archc.errors import SpecError
from tests.conftest import compile_and_verify

VIT_LIKE = """
input: [8, 4, 4]
blocks:
  Scaled:
    layers:
      - {conv: {out: $C, kernel: 3, padding: 1, groups: $C}}
      - parameter: {shape: [$C, 1, 1], use: multiply, init: constant, value: 1.0e-6}
        name: layer_scale
layers:
  - Scaled
  - {conv: {out: 16, kernel: 1}}
  - Scaled
  - flatten: {start: 1}
  - transpose: {dim0: 0, dim1: 1}
  - {parameter: {shape: [1, 1, 16], use: concat}, name: class_token}
  - seq:
      - {parameter: {shape: [1, 17, 16], init: normal, std: 0.02}, name: pos_embedding}
      - relu
    name: encoder
"""


def test_parameters_sit_where_torchvision_keeps_them_and_compute_the_torch_expression() -> None:
    model = compile_and_verify(VIT_LIKE).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(shapes)[:2] == [
        "class_token",
        "0.layer_scale",
    ]  # parameters before children, as nn.Module
    assert shapes["0.layer_scale"] == (8, 1, 1) and shapes["2.layer_scale"] == (16, 1, 1)
    assert shapes["encoder.pos_embedding"] == (1, 17, 16)
    assert torch.equal(model.get_parameter("0.layer_scale"), torch.full((8, 1, 1), 1e-6))
    assert torch.equal(model.class_token, torch.zeros(1, 1, 16))
    assert 0.01 < model.encoder.pos_embedding.std().item() < 0.03
    assert model.code.count("class Scaled(") == 1  # one class, the shape a constructor argument
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
        x = torch.randn(2, 8, 4, 4)
        sd = model.state_dict()
        h = (
            torch.nn.functional.conv2d(x, sd["0.0.weight"], sd["0.0.bias"], padding=1, groups=8)
            * sd["0.layer_scale"]
        )
        h = torch.nn.functional.conv2d(h, sd["1.weight"], sd["1.bias"])
        h = (
            torch.nn.functional.conv2d(h, sd["2.0.weight"], sd["2.0.bias"], padding=1, groups=16)
            * sd["2.layer_scale"]
        )
        h = h.flatten(2).transpose(1, 2)
        h = torch.cat([sd["class_token"].expand(2, -1, -1), h], 1) + sd["encoder.pos_embedding"]
        torch.testing.assert_close(model(x), h.relu())
    assert torch.jit.script(model)(x).shape == (2, 17, 16)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{parameter: {shape: [4, 3, 3], use: add}}", "does not broadcast to the 8x4x4 input"),
        ("{parameter: {shape: [2, 8, 4, 4]}}", "of size 1"),
        (
            "{parameter: {shape: [3, 4], use: concat}}",
            "concat needs a parameter of the input's rank",
        ),
        ("{parameter: {shape: [1, 8, 1, 4], use: concat, dim: 0}}", "differ in another dimension"),
        ("{parameter: {shape: [8, 1, 1], init: normal, std: 0}}", "std"),
        (
            "{parameter: {shape: [8, 1, 1], init: trunc_normal, a: 1.0, b: -1.0}}",
            "trunc_normal needs a < b",
        ),
    ],
)
def test_a_parameter_that_does_not_fit_is_a_positioned_error(item: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        api.build(f"input: [8, 4, 4]\nlayers:\n  - {item}\n")
    assert ":3:" in str(info.value)


INITS = [
    "zeros",
    "ones",
    "constant, value: 0.5",
    "normal, mean: 1.0, std: 0.02",
    "trunc_normal, std: 0.02, a: -0.03, b: 0.03",
]


@pytest.mark.parametrize("init", INITS)
def test_every_init_builds_on_the_meta_device(init: str) -> None:
    """Each init kind's code honours a `torch.device("meta")` context: nothing is allocated (a
    build under it is how the zoo's giants are counted)."""
    spec = (
        f"input: [4, 6]\nlayers:\n  - {{parameter: {{shape: [1, 4, 6], init: {init}}}, name: p}}\n"
    )
    with torch.device("meta"):
        model = api.build(spec)
        out = model(torch.empty(2, 4, 6))
    assert model.p.is_meta and out.is_meta


def test_random_inits_are_torch_s_in_place_fills_with_their_bounds() -> None:
    """normal is ViT's `torch.empty(...)` filled by normal_ (the same draws as torchvision's
    pos_embedding for one seed); trunc_normal is nn.init.trunc_normal_ with absolute bounds."""
    spec = (
        "input: [50, 40]\nlayers:\n"
        "  - {parameter: {shape: [1, 50, 40], init: normal, std: 0.02}, name: pos}\n"
        "  - {parameter: {shape: [50, 40], init: trunc_normal, std: 1.0, a: -0.5, b: 0.25},"
        " name: table}\n"
    )
    torch.manual_seed(3)
    model = api.build(spec)
    torch.manual_seed(3)
    assert torch.equal(model.pos, torch.empty(1, 50, 40).normal_(std=0.02))
    assert -0.5 <= model.table.min().item() < -0.45 and 0.2 < model.table.max().item() <= 0.25
    assert "nn.init.trunc_normal_(self.table, a=-0.5, b=0.25)" in model.code
    assert "torch.normal(" not in model.code


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_static_shapes_and_params_equal_runtime(shape: list[int], data: st.DataObject) -> None:
    use = data.draw(st.sampled_from(["add", "multiply", "concat"]))
    if use == "concat":
        dim = data.draw(st.integers(0, len(shape) - 1))
        own = [data.draw(st.integers(1, 3)) if i == dim else s for i, s in enumerate(shape)]
        extra = f", dim: {dim}"
    else:
        own = [data.draw(st.sampled_from([1, s])) for s in shape][
            data.draw(st.integers(0, len(shape) - 1)) :
        ]
        extra = ""
    if data.draw(st.booleans()):
        own = [1, *own] if use == "concat" or len(own) == len(shape) else own
    compile_and_verify(
        f"input: {shape}\nlayers:\n  - {{parameter: {{shape: "
        f"{own}, use: {use}{extra}}}, name: p}}\n"
    )


@pytest.mark.parametrize("scheme", [s for s in get_args(InitScheme) if s != "torch"])
def test_every_init_rule_builds_on_the_meta_device(scheme: str) -> None:
    """The spec's `init:` rules (nn.init calls in the generated
    __init__) run on meta tensors too."""
    norm = scheme if not scheme.startswith(("kaiming", "xavier")) else "ones"
    spec = (
        f"input: [3, 4, 4]\nlayers:\n  - {{conv: {{out: 4, kernel: 3}}}}\n  - bn\n  - flatten\n"
        f"  - {{linear: 2}}\ninit: {{conv: {scheme}, linear: {scheme}, norm: {norm}}}\n"
    )
    with torch.device("meta"):
        model = api.build(spec)
    assert all(p.is_meta for p in model.parameters())
