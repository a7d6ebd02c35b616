"""The spec language, feature by feature: each test builds a module and checks its structure,
state_dict keys, shapes and (where wiring matters) its numbers against a hand-written forward."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import archc
from archc import api
from archc.cli import main
from archc.compiler.ir import INPUT
from archc.errors import SpecError
from tests.conftest import TEST_SPECS, compile_and_verify


def spec(name: str) -> Path:
    return TEST_SPECS / f"lang_{name}.yaml"


def node_inputs(graph, node_id: str) -> list[str]:
    return graph.nodes[node_id].inputs


class Capture:
    """Forward hooks recording the input and output of named submodules (and whether they ran)."""

    def __init__(self, model: nn.Module, *names: str) -> None:
        self.inputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self.outputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        for n in names:
            model.get_submodule(n).register_forward_hook(self._hook(n))

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self.inputs[name].append(args[0].detach().clone())
            self.outputs[name].append(out.detach().clone())

        return hook


# --------------------------------------------------------------------------- sequential lists


def test_sequential_list_and_bare_op_names(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        blocks:
          Stem:
            params: {width: 6}
            layers:
              - conv: {out: $width, kernel: 3, padding: 1}
              - relu
        layers:
          - Stem
          - maxpool: 2
          - relu
          - flatten
          - linear: 5
          - dropout
          - {linear: 2}
    """)
    model = compile_and_verify(path)
    graph = model.archc_graph
    assert [n.id for n in graph] == ["0.0", "0.1", "1", "2", "3", "4", "5", "6"]
    assert [n.op for n in graph] == [
        "conv",
        "relu",
        "maxpool",
        "relu",
        "flatten",
        "linear",
        "dropout",
        "linear",
    ]
    assert all(
        graph.nodes[b].inputs == [a]
        for a, b in zip([INPUT, *graph.nodes][:-1], graph.nodes, strict=True)
    )
    assert list(model.state_dict()) == [
        "0.0.weight",
        "0.0.bias",
        "4.weight",
        "4.bias",
        "6.weight",
        "6.bias",
    ]
    assert isinstance(model.get_submodule("0.1"), nn.ReLU) and isinstance(
        model.get_submodule("5"), nn.Dropout
    )
    assert model.get_submodule("5").p == 0.5  # a bare op name takes the default arguments
    assert model.get_submodule("0.0").out_channels == 6  # a bare block name: the block's defaults
    assert model.get_submodule("4").in_features == 6 * 4 * 4
    assert graph.shape_of(graph.output) == (2,)


def test_shorthands_fill_the_main_argument(write_spec) -> None:
    path = write_spec("""
        input: [4, 8, 8]
        layers:
          - maxpool: 2
          - dropout: 0.25
          - {gn: 2}
          - {leaky_relu: 0.2}
          - flatten
          - linear: 7
    """)
    model = compile_and_verify(path)
    assert model.get_submodule("0").kernel_size == 2 and model.get_submodule("0").stride == 2
    assert model.get_submodule("1").p == 0.25
    assert model.get_submodule("2").num_groups == 2
    assert model.get_submodule("3").negative_slope == 0.2
    assert model.get_submodule("5").out_features == 7


# --------------------------------------------------------------------------- residual add


def test_residual_identity_and_projection_shortcuts() -> None:
    model = compile_and_verify(spec("resnet"))
    graph = model.archc_graph
    assert [n.id for n in graph if n.op == "add"] == [
        "layer1.0.add",
        "layer1.1.add",
        "layer2.0.add",
        "layer2.1.add",
    ]
    # identity shortcut: the block's input flows straight into the add
    assert node_inputs(graph, "layer1.0.add") == ["layer1.0.bn2", "relu"]
    assert node_inputs(graph, "layer2.1.add") == ["layer2.1.bn2", "layer2.0.relu~2"]
    # projection shortcut only where the stride or the width changes
    # (`when: ${stride != 1 or C != planes}`)
    assert node_inputs(graph, "layer2.0.add") == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert node_inputs(graph, "layer2.0.downsample.0") == ["layer1.1.relu~2"]
    keys = list(model.state_dict())
    assert [k for k in keys if "downsample" in k] == [
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "layer2.0.downsample.1.bias",
        "layer2.0.downsample.1.running_mean",
        "layer2.0.downsample.1.running_var",
        "layer2.0.downsample.1.num_batches_tracked",
    ]
    ds = model.get_submodule("layer2.0.downsample.0")
    assert (ds.in_channels, ds.out_channels, ds.kernel_size, ds.stride) == (8, 16, (1, 1), (2, 2))
    conv1 = model.get_submodule("layer2.0.conv1")
    assert (conv1.stride, model.get_submodule("layer2.1.conv1").stride) == (
        (2, 2),
        (1, 1),
    )  # ${2 if i == 0 else 1}
    assert graph.shape_of("layer1.1.relu~2") == (8, 16, 16) and graph.shape_of(
        "layer2.1.relu~2"
    ) == (16, 8, 8)


def test_then_applies_after_the_merge_with_a_shared_relu() -> None:
    model = compile_and_verify(spec("resnet"))
    graph = model.archc_graph
    then = graph.nodes["layer1.0.relu~2"]
    assert then.inputs == ["layer1.0.add"] and then.module == "layer1.0.relu" and then.shared
    assert (
        graph.nodes["layer1.0.relu"].inputs == ["layer1.0.bn1"]
        and not graph.nodes["layer1.0.relu"].shared
    )
    # one nn.ReLU module serves both uses, like torchvision's BasicBlock
    assert [name for name, _ in model.get_submodule("layer1.0").named_children()] == [
        "conv1",
        "bn1",
        "relu",
        "conv2",
        "bn2",
    ]


def test_residual_numbers_match_a_hand_written_block() -> None:
    torch.manual_seed(0)
    model = api.build(spec("resnet")).eval()
    x = torch.randn(2, 3, 16, 16)
    cap = Capture(model, "layer1", "layer2.0.conv1", "fc")
    seen: dict[str, torch.Tensor] = {}
    model.get_submodule("layer2.0.conv1").register_forward_pre_hook(
        lambda m, a: seen.setdefault("in", a[0].clone())
    )
    model.get_submodule("layer2.1.conv1").register_forward_pre_hook(
        lambda m, a: seen.setdefault("out", a[0].clone())
    )
    with torch.no_grad():
        model(x)
        b = model.get_submodule("layer2.0")
        h = seen["in"]
        main = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(h)))))
        short = b.get_submodule("downsample.1")(b.get_submodule("downsample.0")(h))
        expected = torch.relu(main + short)
    assert cap.outputs["layer2.0.conv1"]
    torch.testing.assert_close(seen["out"], expected)


# --------------------------------------------------------------------------- concat, blocks


def test_concat_of_four_branches_and_blocks_calling_blocks() -> None:
    model = compile_and_verify(spec("inception"))
    graph = model.archc_graph
    cat = graph.nodes["inc.concat"]
    assert cat.inputs == [
        "inc.branch1.relu",
        "inc.branch2.1.relu",
        "inc.branch4.1.relu",
        "stem.relu",
    ]
    assert cat.shape == (8 + 8 + 4 + 16, 12, 12)
    assert (
        graph.scopes["inc"].block == "Inception"
        and graph.scopes["inc.branch1"].block == "BasicConv2d"
    )
    assert (
        graph.scopes["inc.branch2"].kind == "seq"
        and graph.scopes["inc.branch2.0"].block == "BasicConv2d"
    )
    # required and default block parameters: kernel/padding default to 1/0, bn eps passed through
    b1 = model.get_submodule("inc.branch1.conv")
    assert (b1.in_channels, b1.out_channels, b1.kernel_size, b1.padding) == (16, 8, (1, 1), (0, 0))
    b2 = model.get_submodule("inc.branch2.1.conv")
    assert (b2.in_channels, b2.out_channels, b2.kernel_size, b2.padding) == (4, 8, (3, 3), (1, 1))
    assert model.get_submodule("inc.branch2.1.bn").eps == 0.001
    pool = model.get_submodule("inc.branch4.0")
    assert isinstance(pool, nn.MaxPool2d) and pool.ceil_mode and pool.stride == 1
    assert model.get_submodule("stem.conv").out_channels == 32 // 2  # "${32 // ratio}"
    assert model.get_submodule("fc").in_features == 36 * 2 * 2


def test_concat_numbers_match_torch_cat() -> None:
    torch.manual_seed(0)
    model = api.build(spec("inception")).eval()
    cap = Capture(
        model, "stem.relu", "inc.branch1.relu", "inc.branch2.1.relu", "inc.branch4.1.relu", "2"
    )
    with torch.no_grad():
        model(torch.randn(2, 3, 12, 12))
    parts = [
        cap.outputs[n][-1]
        for n in ("inc.branch1.relu", "inc.branch2.1.relu", "inc.branch4.1.relu", "stem.relu")
    ]
    torch.testing.assert_close(cap.inputs["2"][0], torch.cat(parts, 1))


def test_block_sees_only_its_params_and_the_spec_params(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        params: {base: 4}
        blocks:
          B:
            params: {mult: 2}
            layers:
              - conv: {out: "${base * mult}", kernel: 1}
        layers:
          - {conv: {out: 5, kernel: 1}, name: outer}
          - B: {mult: 3}
          - B
    """)
    model = compile_and_verify(path)
    assert (
        model.get_submodule("1.0").out_channels == 12
        and model.get_submodule("2.0").out_channels == 8
    )
    bad = write_spec(
        """
        input: [3, 8, 8]
        blocks:
          B:
            layers:
              - {relu: , from: outer}
        layers:
          - {conv: {out: 5, kernel: 1}, name: outer}
          - B
    """,
        "bad.yaml",
    )
    with pytest.raises(SpecError, match="unknown node 'outer'") as info:
        api.compile_graph(bad)
    assert info.value.line == 5
    assert (
        info.value.message
        == "unknown node 'outer' in block 'B': a block body sees only its own names and 'input'"
    )


def test_block_argument_may_use_the_callers_shape(write_spec) -> None:
    model = compile_and_verify(spec("seq1d"))
    assert (
        model.get_submodule("se.fc1").out_channels == 4
        and model.get_submodule("se.fc2").out_channels == 8
    )
    graph = model.archc_graph
    assert graph.nodes["se.multiply"].inputs == ["2", "se.gate"] and graph.nodes[
        "se.gate"
    ].shape == (8, 1)
    assert isinstance(model.get_submodule("0"), nn.Conv1d) and isinstance(
        model.get_submodule("1"), nn.BatchNorm1d
    )
    assert (
        isinstance(model.get_submodule("9"), nn.BatchNorm1d)
        and model.get_submodule("9").num_features == 16
    )


def make_layers(cfg: list[int | str], batch_norm: bool, in_channels: int = 3) -> nn.Sequential:
    """torchvision.models.vgg.make_layers, verbatim in behaviour
    (importing torchvision costs seconds)."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv = nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1)
            layers += (
                [conv, nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                if batch_norm
                else [conv, nn.ReLU(inplace=True)]
            )
            in_channels = int(v)
    return nn.Sequential(*layers)


def test_inline_blocks_number_like_torchvision_make_layers() -> None:
    cfg: list[int | str] = [8, "M", 16, "M", 32, 32, "M"]
    for bn in (True, False):
        model = compile_and_verify(spec("vgg"), bn=bn)
        ours = {
            k[len("features.") :]: v.shape
            for k, v in model.state_dict().items()
            if k.startswith("features.")
        }
        reference = make_layers(cfg, batch_norm=bn)
        assert ours == {k: v.shape for k, v in reference.state_dict().items()}
        assert [(n, type(m)) for n, m in model.features.named_children()] == [
            (n, type(m)) for n, m in reference.named_children()
        ]
        reference.load_state_dict(
            {
                k[len("features.") :]: v
                for k, v in model.state_dict().items()
                if k.startswith("features.")
            }
        )
        model.eval()
        reference.eval()
        # a Block's own forward never runs: hook its last layer
        last = f"features.{list(model.features._modules)[-1]}"
        cap = Capture(model, last)
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            model(x)
            torch.testing.assert_close(cap.outputs[last][0], reference(x))
    assert list(model.classifier._modules) == ["0", "1", "2", "3"]
    assert model.get_submodule("classifier.0").in_features == 32


def test_repeat_with_index_and_var() -> None:
    graph = api.compile_graph(spec("vgg"))
    convs = [n for n in graph if n.op == "conv"]
    # stage(n=1, 8), then repeat {count: 2, var: j}: stage(n=j+1, channels=8 * 2 ** (j + 1))
    assert [n.shape[0] for n in convs] == [8, 16, 32, 32]


def test_repeat_with_interpolated_names_and_zero_dropped_by_when(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        params: {stages: 3, extra: 0}
        layers:
          - {conv: {out: "${4 * (i + 1)}", kernel: 1}, name: "stage${i + 1}", repeat: $stages}
          - {relu: , repeat: $extra, when: "${extra > 0}"}
          - {conv: {out: 2, kernel: 1}, name: "c_${j}", repeat: {count: 2, var: j}}
    """)
    model = compile_and_verify(path)
    assert list(model._modules) == ["stage1", "stage2", "stage3", "c_0", "c_1"]
    assert [model.get_submodule(f"stage{i}").out_channels for i in (1, 2, 3)] == [4, 8, 12]
    assert model.c_0.in_channels == 12 and model.c_1.in_channels == 2
    assert "relu" not in [n.op for n in model.archc_graph]


@pytest.mark.parametrize("count", ["0", "$extra", "[]", "{count: 0}", "{each: []}"])
def test_repeat_zero_is_an_error_that_suggests_when(count: str, write_spec) -> None:
    path = write_spec(f"""
        input: [3, 8, 8]
        params: {{extra: 0}}
        layers:
          - {{relu: , repeat: {count}}}
    """)
    with pytest.raises(
        SpecError, match=r"repeat (count must be a positive integer|over an empty list).*'?when"
    ) as info:
        api.compile_graph(path)
    assert info.value.line == 4


def test_index_list_parameters_in_a_family_table(write_spec) -> None:
    """`${depths[i]}`: one spec, a table of stage depths and widths (as
    ConvNeXt and Swin write them)."""
    path = write_spec("""
        input: [3, 16, 16]
        params:
          depths: [1, 2, 1]
          widths: [4, 8, 16]
        layers:
          - seq:
              - conv: {out: "${widths[s]}", kernel: 3, padding: 1, stride: "${1 if s == 0 else 2}"}
              - {conv: {out: "${widths[s]}", kernel: 3, padding: 1}, repeat: "${depths[s]}"}
            name: "stage${s}"
            repeat: {count: "${len(depths)}", var: s}
          - global_avgpool
          - flatten
          - {linear: "${widths[-1] // 2}", name: fc}
    """)
    model = compile_and_verify(path)
    assert list(model._modules) == ["stage0", "stage1", "stage2", "3", "4", "fc"]
    assert [len(list(model.get_submodule(f"stage{s}").children())) for s in range(3)] == [2, 3, 2]
    assert model.get_submodule("stage2.0").out_channels == 16 and model.fc.out_features == 8


STAGE_TABLE_SPEC = """
    input: [6, 16, 16]
    params:
      stages:
        - {planes: 4, blocks: 1, stride: 1}
        - {planes: 8, blocks: 2, stride: 2}
      width_per_group: 64
      groups: 1
    blocks:
      Block:
        params:
          planes: null
          stride: 1
          width: ${int(planes * (width_per_group / 64)) * groups}
          project: ${stride != 1 or C != planes}
        layers:
          - add:
              - - conv: {out: $width, kernel: 3, stride: $stride, padding: 1, groups: $groups}
                  name: conv1
                - {conv: {out: $planes, kernel: 3, padding: 1}, name: conv2}
              - {conv: {out: $planes, kernel: 1, stride: $stride}, name: downsample, when: $project}
    layers:
      - seq:
          - {Block: {planes: $planes, stride: "${stride if i == 0 else 1}"}, repeat: $blocks}
        name: "layer${s + 1}"
        repeat: {each: $stages, as: stage, var: s}
"""


def test_repeat_over_a_stage_table_binds_each_element(write_spec) -> None:
    """`repeat: {each: $stages}`: one repetition per element; a mapping's keys become variables."""
    model = compile_and_verify(write_spec(STAGE_TABLE_SPEC))
    assert list(model._modules) == ["layer1", "layer2"]
    assert list(model.layer1._modules) == ["0"] and list(model.layer2._modules) == ["0", "1"]
    assert model.get_submodule("layer2.0.conv1").stride == (2, 2)
    assert model.get_submodule("layer2.1.conv1").stride == (1, 1)

    def children(path: str) -> list[str]:
        return [name for name, _ in model.get_submodule(path).named_children()]

    assert "downsample" in children("layer2.0")
    assert "downsample" in children("layer1.0")  # C = 6 != planes = 4
    assert "downsample" not in children("layer2.1")


def test_block_defaults_see_spec_parameters_and_the_input_shape(write_spec) -> None:
    """ResNeXt's width from the spec's width_per_group and groups; a
    projection from the input's C."""
    path = write_spec(STAGE_TABLE_SPEC, "resnext.yaml")
    model = compile_and_verify(path, width_per_group=128, groups=2)
    assert model.get_submodule("layer1.0.conv1").out_channels == 4 * 2 * 2
    assert model.get_submodule("layer1.0.conv1").groups == 2
    assert model.get_submodule("layer2.1.conv1").out_channels == 8 * 2 * 2


def test_repeat_over_a_list_binds_item_and_index(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        layers:
          - {conv: {out: $item, kernel: 1}, name: "c${i}_${item}", repeat: [4, 6]}
          - conv: {out: "${w * 2}", kernel: 1}
            name: "d${j}"
            repeat: {each: [1, 3], as: w, var: j}
    """)
    model = compile_and_verify(path)
    assert list(model._modules) == ["c0_4", "c1_6", "d0", "d1"]
    assert [m.out_channels for m in model.children()] == [4, 6, 2, 6]


# --------------------------------------------------------------------------- parameters


PARAM_SPEC = """
    input: [3, 8, 8]
    params:
      planes: 4
      ratio: 4
      wide: ${planes * 2}
      bn: true
      act: relu
    layers:
      - conv: {out: "${planes * 4}", kernel: 3, padding: 1}
      - {bn: , when: $bn}
      - $act
      - conv: {out: "${64 // ratio}", kernel: 1}
      - {bn: , when: $bn}
      - conv: {out: $wide, kernel: 1}
      - flatten
      - linear: 3
"""


def test_params_defaults_and_arithmetic(write_spec) -> None:
    model = compile_and_verify(write_spec(PARAM_SPEC))
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [16, 16, 8]
    assert [m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [3, 16, 16]
    assert list(model._modules) == ["0", "1", "2", "3", "4", "5", "6", "7"]
    loaded = api.load(write_spec(PARAM_SPEC))
    assert loaded.params == {"planes": 4, "ratio": 4, "wide": 8, "bn": True, "act": "relu"}


def test_overrides_from_the_api(write_spec) -> None:
    path = write_spec(PARAM_SPEC)
    model = compile_and_verify(path, bn=False, planes=2, ratio=8, act="gelu")
    assert list(model._modules) == ["0", "1", "2", "3", "4", "5"]  # dropped layers take no index
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [
        8,
        8,
        4,
    ]  # wide = planes * 2
    assert isinstance(model.get_submodule("1"), nn.GELU)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert archc.build is api.build
    assert list(archc.build(path, bn=False).state_dict()) == list(model.state_dict())
    loaded = api.load(path, planes=2)
    assert loaded.overrides == {"planes": 2} and loaded.params["wide"] == 4
    # overrides on an already loaded spec apply on top of its own
    assert api.compile_graph(loaded, bn=False).nodes["0"].shape == (8, 8, 8)
    assert api.compile_graph(loaded, bn=False).shape_of("3") == (4, 8, 8)


def test_overrides_from_the_cli(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(PARAM_SPEC)
    assert (
        main(["build", str(path), "--format", "json", "--set", "bn=false", "--set", "planes=2"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["op"]) for r in report["layers"]] == [
        ("0", "conv"),
        ("1", "relu"),
        ("2", "conv"),
        ("3", "conv"),
        ("4", "flatten"),
        ("5", "linear"),
    ]
    assert report["layers"][0]["shape"] == [8, 8, 8]
    assert main(["check", str(path), "--set", "bn=false", "--set", "planes=2"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok  3x8x8 -> 3, ")


def test_override_float_accepts_int_and_list_params(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        params: {p: 0.5, sizes: [2, 4]}
        layers:
          - dropout: $p
          - conv: {out: "${max(sizes)}", kernel: 1}
    """)
    with pytest.raises(SpecError, match="parameter 'p' expects a number, got 'x'"):
        api.load(path, p="x")
    loaded = api.load(path, p=1)
    assert loaded.params["p"] == 1.0 and isinstance(loaded.params["p"], float)
    model = compile_and_verify(path, p=0, sizes=[3, 9])
    assert model.get_submodule("0").p == 0.0 and model.get_submodule("1").out_channels == 9


def test_input_shape_from_params_and_override(write_spec) -> None:
    path = write_spec("""
        input: [$channels, $size, $size]
        params: {channels: 1, size: 12}
        layers:
          - conv: {out: 4, kernel: 3}
          - global_avgpool
          - flatten
          - linear: 2
    """)
    assert api.load(path).input_shape == (1, 12, 12)
    model = compile_and_verify(path, channels=3, size=9)
    assert model.get_submodule("0").in_channels == 3 and model.archc_graph.input_shape == (3, 9, 9)
    assert api.compile_graph(path, input_shape=(2, 5, 5)).nodes["0"].shape == (4, 3, 3)


# --------------------------------------------------------------------------- references


def test_densenet_dense_connections_by_reference() -> None:
    model = compile_and_verify(spec("densenet"))
    graph = model.archc_graph
    assert node_inputs(graph, "cat1") == ["conv0", "denselayer1.conv2"]
    assert node_inputs(graph, "cat2") == ["conv0", "denselayer1.conv2", "denselayer2.conv2"]
    assert node_inputs(graph, "concat") == [
        "conv0",
        "denselayer1.conv2",
        "denselayer2.conv2",
        "denselayer3.conv2",
    ]
    assert [graph.shape_of(n)[0] for n in ("cat1", "cat2", "concat")] == [12, 16, 20]
    # a named block reads the previous item (the concat), as torchvision's _DenseBlock does
    assert node_inputs(graph, "denselayer2.norm1") == ["cat1"]
    assert (
        model.get_submodule("denselayer3.norm1").num_features == 16
        and model.norm5.num_features == 20
    )
    assert model.classifier.in_features == 20
    torch.manual_seed(0)
    model.eval()
    cap = Capture(model, "conv0", "denselayer1.conv2", "denselayer2.conv2", "denselayer3.norm1")
    with torch.no_grad():
        model(torch.randn(2, 3, 8, 8))
    expected = torch.cat(
        [
            cap.outputs["conv0"][0],
            cap.outputs["denselayer1.conv2"][0],
            cap.outputs["denselayer2.conv2"][0],
        ],
        1,
    )
    torch.testing.assert_close(cap.inputs["denselayer3.norm1"][0], expected)


def test_unet_long_skips_with_upsampling() -> None:
    model = compile_and_verify(spec("unet"))
    graph = model.archc_graph
    assert node_inputs(graph, "cat2") == ["enc2.3", "up2"] and graph.shape_of("cat2") == (16, 8, 8)
    assert node_inputs(graph, "up1") == ["dec2.3"] and graph.shape_of("up1") == (8, 16, 16)
    assert node_inputs(graph, "cat1") == ["up1", "enc1.3"] and graph.shape_of("cat1") == (
        12,
        16,
        16,
    )
    assert graph.shape_of(graph.output) == (2, 16, 16)
    assert isinstance(model.up2, nn.ConvTranspose2d) and model.up2.in_channels == 16
    assert model.get_submodule("dec1.0").in_channels == 12
    # the flow continues from the previous item even when it was referenced by name before
    assert node_inputs(graph, "pool2") == ["enc2.3"] and node_inputs(graph, "dec1.0") == ["cat1"]
    model.eval()
    cap = Capture(model, "enc1.3", "dec2.3", "dec1.0")
    with torch.no_grad():
        model(torch.randn(2, 1, 16, 16))
    up = nn.functional.interpolate(
        cap.outputs["dec2.3"][0], scale_factor=2, mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(
        cap.inputs["dec1.0"][0], torch.cat([up, cap.outputs["enc1.3"][0]], 1)
    )


def test_aux_head_from_an_inner_node() -> None:
    model = compile_and_verify(spec("aux"))
    graph = model.archc_graph
    assert [(h.name, h.node, h.loss_weight, h.train_only) for h in model.archc_heads] == [
        ("aux1", "aux1.fc", 0.3, True)
    ]
    assert node_inputs(graph, "aux1.0") == ["pool1"]
    assert node_inputs(graph, "conv2") == ["pool1"]  # the flow skips the head
    assert graph.output == "fc"
    x = torch.randn(2, 3, 16, 16)
    cap = Capture(model, "aux1.fc", "fc")
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and [tuple(t.shape) for t in out] == [(2, 4), (2, 4)]
    assert len(cap.outputs["aux1.fc"]) == 1
    torch.testing.assert_close(out[1], cap.outputs["aux1.fc"][0])
    model.eval()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    assert len(cap.outputs["aux1.fc"]) == 1, "eval mode must not compute a train-only head"
    assert len(cap.outputs["fc"]) == 2
    assert (
        "aux1" in model.code.split("def _forward_eval")[0]
        and "aux1" not in model.code.split("def _forward_eval")[1]
    )
    assert graph.macs(include_train_only=True) - graph.total_macs == graph.nodes["aux1.fc"].macs


def test_head_kept_in_eval_when_not_train_only(write_spec) -> None:
    path = write_spec("""
        input: [4]
        layers:
          - {linear: 8, name: trunk}
          - {linear: 2, name: side, head: {loss_weight: 0.5, train_only: false}}
          - {linear: 3, name: out}
    """)
    model = compile_and_verify(path)
    model.eval()
    out = model(torch.randn(2, 4))
    assert isinstance(out, tuple) and [tuple(t.shape) for t in out] == [(2, 3), (2, 2)]
    assert model.archc_graph.nodes["out"].inputs == ["trunk"]


# --------------------------------------------------------------------------- naming


def test_inferred_input_channels_and_features() -> None:
    model = api.build(spec("resnet"))
    assert model.conv1.in_channels == 3 and model.get_submodule("layer1.0.conv1").in_channels == 8
    assert (
        model.get_submodule("layer2.0.conv1").in_channels == 8
        and model.get_submodule("layer2.1.conv1").in_channels == 16
    )
    assert model.get_submodule("layer2.0.bn1").num_features == 16
    assert model.fc.in_features == 16 and model.fc.out_features == 10


def test_stable_names_explicit_auto_and_shared(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        layers:
          - {conv: {out: 4, kernel: 3, padding: 1}, name: stem}
          - {relu: , name: act}
          - {conv: {out: 4, kernel: 3, padding: 1}}
          - {relu: , name: act}
          - seq: [{conv: {out: 4, kernel: 1}}, {relu: , name: act}]
          - seq: [relu]
            name: tail
          - identity
          - {maxpool: 2}
    """)
    model = compile_and_verify(path)
    graph = model.archc_graph
    assert list(model._modules) == [
        "stem",
        "act",
        "2",
        "4",
        "tail",
        "6",
    ]  # names advance the index too
    assert [n.id for n in graph] == [
        "stem",
        "act",
        "2",
        "act~2",
        "4.0",
        "4.act",
        "tail.0",
        "identity",
        "6",
    ]
    assert graph.nodes["act~2"].shared and graph.nodes["act~2"].module == "act"
    assert not graph.nodes["4.act"].shared  # a child namespace has its own names
    # building twice gives the same keys in the same order
    assert (
        list(api.build(path).state_dict())
        == list(model.state_dict())
        == ["stem.weight", "stem.bias", "2.weight", "2.bias", "4.0.weight", "4.0.bias"]
    )


def test_shared_name_needs_identical_arguments(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        layers:
          - {leaky_relu: 0.1, name: act}
          - {leaky_relu: 0.2, name: act}
    """)
    with pytest.raises(SpecError, match="name 'act' is already used \\(line 3\\)") as info:
        api.compile_graph(path)
    assert (info.value.line, info.value.col) == (4, 6)


# --------------------------------------------------------------------------- train and init


def test_train_section_is_validated_and_may_use_params(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        params: {n: 3}
        layers: [relu]
        train:
          dataset: cifar10
          epochs: ${n * 2}
          optimizer: adamw
          lr: 0.001
    """)
    loaded = api.load(path)
    assert loaded.train is not None
    assert (loaded.train.dataset, loaded.train.epochs, loaded.train.optimizer, loaded.train.lr) == (
        "cifar10",
        6,
        "adamw",
        0.001,
    )
    assert api.load(path, n=5).train.epochs == 10
    assert api.load(write_spec("input: [3]\nlayers: [relu]\n", "plain.yaml")).train is None
    bad = write_spec("input: [3]\nlayers: [relu]\ntrain:\n  optimizer: rmsprop\n", "bad.yaml")
    with pytest.raises(
        SpecError, match="train: optimizer: input should be 'sgd', 'adam' or 'adamw'"
    ) as info:
        api.load(bad)
    assert (info.value.line, info.value.col) == (4, 14)


def test_init_rules_are_applied() -> None:
    torch.manual_seed(0)
    model = api.build(spec("init"))
    conv, bn, fc, out = model.conv, model.bn, model.fc, model.out
    fan_out = 32 * 3 * 3
    assert conv.weight.std().item() == pytest.approx(
        (2 / fan_out) ** 0.5, rel=0.05
    )  # kaiming_normal, fan_out, relu
    assert abs(conv.weight.mean().item()) < 0.01
    assert torch.equal(conv.bias, torch.full((32,), 0.5))
    for layer in (fc, out):
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05 if layer is fc else 0.15)
        assert torch.equal(layer.bias, torch.full_like(layer.bias, -1.0))
    assert torch.equal(bn.weight, torch.zeros(32)) and torch.equal(bn.bias, torch.zeros(32))


@pytest.mark.parametrize(
    ("rule", "check"),
    [
        ("{scheme: xavier_uniform, gain: 2.0}", "xavier_uniform"),
        ("{scheme: xavier_normal}", "xavier_normal"),
        ("{scheme: kaiming_uniform, nonlinearity: relu}", "kaiming_uniform"),
        ("zeros", "zeros"),
        ("{scheme: ones, bias: null}", "ones"),
        ("{scheme: uniform, low: -0.3, high: 0.1, bias: 2}", "uniform"),
        ("{scheme: trunc_normal, std: 0.05}", "trunc_normal"),
        ("torch", "torch"),
    ],
)
def test_init_schemes(rule: str, check: str, write_spec) -> None:
    path = write_spec(f"""
        input: [64, 4, 4]
        layers:
          - {{conv: {{out: 64, kernel: 3}}, name: conv}}
        init:
          conv: {rule}
    """)
    torch.manual_seed(0)
    model = api.build(path)
    w, b = model.conv.weight.detach(), model.conv.bias.detach()
    fan_in = fan_out = 64 * 9
    if check == "xavier_uniform":
        bound = 2.0 * (6 / (fan_in + fan_out)) ** 0.5
        assert w.abs().max().item() <= bound and w.abs().max().item() > 0.95 * bound
        assert w.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    elif check == "xavier_normal":
        assert w.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.05)
    elif check == "kaiming_uniform":
        bound = (6 / fan_in) ** 0.5
        assert w.abs().max().item() <= bound and w.std().item() == pytest.approx(
            bound / 3**0.5, rel=0.05
        )
    elif check == "zeros":
        assert not w.any()
    elif check == "ones":
        assert torch.equal(w, torch.ones_like(w))
        # bias: null keeps torch's default: uniform in +-1/sqrt(fan_in), not a constant
        assert b.abs().max().item() <= 1 / fan_in**0.5 and b.unique().numel() == b.numel()
    elif check == "uniform":
        assert (
            w.min().item() >= -0.3
            and w.max().item() <= 0.1
            and w.mean().item() == pytest.approx(-0.1, abs=0.01)
        )
        assert torch.equal(b, torch.full_like(b, 2.0))
    elif check == "trunc_normal":
        assert w.abs().max().item() <= 0.1 and w.std().item() == pytest.approx(
            0.05 * 0.88, rel=0.05
        )
    if check in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "zeros", "trunc_normal"):
        assert not b.any()  # bias defaults to 0
    if check == "torch":  # PyTorch's default: kaiming_uniform(a=sqrt(5)) -> bound 1/sqrt(fan_in)
        assert w.abs().max().item() <= 1 / fan_in**0.5 and b.any()


def test_init_with_fixed_seed_is_reproducible() -> None:
    torch.manual_seed(123)
    a = api.build(spec("init")).state_dict()
    torch.manual_seed(123)
    b = api.build(spec("init")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the API


def test_api_load_returns_a_validated_spec(tmp_path: Path) -> None:
    loaded = api.load(spec("resnet"))
    assert loaded.name == "lang_resnet" and loaded.input_shape == (3, 16, 16)
    assert loaded.params == {"num_classes": 10, "base": 8} and loaded.overrides == {}
    assert loaded.path == str(spec("resnet"))
    assert (
        len(loaded.source_hash) == 64
        and api.load(spec("resnet"), base=4).source_hash != loaded.source_hash
    )
    text = spec("resnet").read_text()
    from_text = api.load(text)
    assert from_text.path == "<string>" and from_text.params == loaded.params
    nameless = tmp_path / "my_net.yaml"
    nameless.write_text("input: [3]\nlayers: [relu]\n")
    assert api.load(nameless).name == "my_net"


def test_api_build_accepts_a_loaded_spec_and_an_input_shape() -> None:
    loaded = api.load(spec("resnet"))
    model = api.build(loaded, num_classes=3)
    assert model.fc.out_features == 3 and model.archc_graph.name == "lang_resnet"
    assert type(model).__name__ == "LangResnet"
    assert api.build(loaded).fc.out_features == 10  # the loaded spec is not modified by an override
    small = api.build(spec("resnet"), input_shape=(3, 8, 8))
    assert small.archc_graph.shape_of("layer2.1.relu~2") == (16, 4, 4)
    assert small(torch.zeros(1, 3, 8, 8)).shape == (1, 10)


def test_api_analyze_rows_and_totals() -> None:
    analysis = api.analyze(spec("resnet"))
    rows = analysis.rows()
    graph = analysis.graph
    assert [r["name"] for r in rows] == list(graph.nodes)
    fc = rows[-1]
    assert fc == {
        "name": "fc",
        "op": "linear",
        "label": "linear 10",
        "inputs": ["6"],
        "shape": [10],
        "params": 170,
        "buffers": 0,
        "macs": 160,
        "other_ops": 10,
        "module": "fc",
        "scope": "",
        "line": 32,
        "layout": "F",
    }
    conv1 = rows[0]
    assert conv1["params"] == 8 * 3 * 9 and conv1["macs"] == 8 * 3 * 9 * 16 * 16
    totals = analysis.totals()
    model = api.build(spec("resnet"))
    assert (
        totals["params"]
        == sum(p.numel() for p in model.parameters())
        == sum(r["params"] for r in rows if not graph.nodes[r["name"]].shared)
    )
    assert totals["buffers"] == sum(b.numel() for b in model.buffers())
    assert totals["macs"] == sum(r["macs"] for r in rows) and totals["flops"] == 2 * totals["macs"]
    assert (
        totals["input"] == [3, 16, 16] and totals["output"] == [10] and totals["nodes"] == len(rows)
    )
    assert totals["depth"] == 1 + 2 * 4 + 1  # conv1, 4 blocks of 2 convs, fc
    assert api.analyze(spec("resnet"), num_classes=5).totals()["output"] == [5]


def test_api_compile_graph_does_not_need_torch_modules() -> None:
    graph = api.compile_graph(spec("unet"))
    assert graph.total_params == sum(n.params for n in graph) and graph.output == "head"
    assert all(isinstance(n.shape, tuple) for n in graph)


# ------------------------------------------------------------------------ shape variables and from:


def test_from_sets_the_shape_variables_of_the_item(write_spec) -> None:
    """`C` in an item with `from:` is the referenced node's channels, not the previous item's."""
    path = write_spec("""
        input: [8, 6, 6]
        layers:
          - {conv: {out: 2, kernel: 1}, name: squeeze}
          - {conv: {out: $C, kernel: 3, padding: 1}, from: input, name: full}
          - {conv: {out: "${C * 2}", kernel: 1}, from: squeeze, name: wide}
    """)
    model = compile_and_verify(path)
    assert (model.full.in_channels, model.full.out_channels) == (8, 8)
    assert (model.wide.in_channels, model.wide.out_channels) == (2, 4)


def test_from_sets_the_shape_variables_of_when_name_and_repeat(write_spec) -> None:
    path = write_spec("""
        input: [8, 6, 6]
        layers:
          - {conv: {out: 2, kernel: 1}, name: squeeze}
          - {conv: {out: 3, kernel: 1}, from: input, when: "${C == 8}", name: "kept_${C}"}
          - {conv: {out: 3, kernel: 1}, from: squeeze, when: "${C == 8}", name: dropped}
          - {relu: , from: input, repeat: "${C // 4}"}
    """)
    graph = api.compile_graph(path)
    assert "kept_8" in graph.nodes and "dropped" not in graph.nodes
    assert [n.op for n in graph].count("relu") == 2


def test_from_with_several_nodes_reads_the_shape_of_the_first(write_spec) -> None:
    path = write_spec("""
        input: [8, 6, 6]
        layers:
          - {conv: {out: 2, kernel: 1}, name: a}
          - {conv: {out: 5, kernel: 1}, from: input, name: b}
          - {concat: , from: [b, a], when: "${C == 5}", name: cat}
          - {conv: {out: $C, kernel: 1}, name: fuse}
    """)
    model = compile_and_verify(path)
    assert model.fuse.in_channels == 7 and model.fuse.out_channels == 7
    assert "cat" in model.archc_graph.nodes


def test_dropped_item_may_name_a_dropped_node(write_spec) -> None:
    path = write_spec("""
        input: [8, 6, 6]
        params: {proj: false}
        layers:
          - {conv: {out: 8, kernel: 1}, name: proj, when: $proj}
          - {relu: , from: proj, when: $proj}
          - {relu: , from: proj, when: "${proj and C == 8}"}
          - tanh
    """)
    graph = api.compile_graph(path)
    assert [n.op for n in graph] == ["tanh"]
    kept = path.read_text().replace("proj: false", "proj: true")
    path.write_text(kept.replace("{conv: {out: 8, kernel: 1}, name: proj, when: $proj}", "relu"))
    with pytest.raises(SpecError, match="unknown node 'proj'"):
        api.compile_graph(path)


def test_repeat_over_a_mapping_binds_key_and_value(write_spec) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        params:
          stages: {stem: {width: 4}, body: {width: 6}}
        layers:
          - {conv: {out: $width, kernel: 1}, name: "${key}_${i}", repeat: $stages}
          - conv: {out: "${item['width'] * 2}", kernel: 1}
            name: "x_${key}"
            repeat: {each: $stages, as: item}
    """)
    model = compile_and_verify(path)
    assert list(model._modules) == ["stem_0", "body_1", "x_stem", "x_body"]
    assert [m.out_channels for m in model.children()] == [4, 6, 8, 12]


# --------------------------------------------------------------------------- several outputs
SHUFFLE_UNIT = """
input: [16, 6, 6]
layers:
  - {chunk: 2, name: halves}
  - seq:
      - {conv: {out: 8, kernel: 1, bias: false}}
      - relu
      - {conv: {out: 8, kernel: 3, padding: 1, groups: 8, bias: false}}
    name: branch2
    from: halves.1
  - {concat: , from: [halves.0, branch2]}
  - channel_shuffle: 2
  - {split: {sizes: [4, 12]}, name: parts}
  - {conv: {out: 4, kernel: 1}, from: parts.1, name: proj}
  - {add: , from: [parts.0, proj]}
"""


def test_chunk_and_split_outputs_are_read_by_name_and_compute_torch_s_split() -> None:
    """ShuffleNetV2's unit: `x1, x2 = x.chunk(2, dim=1)`, a branch on x2, cat, shuffle; then a split
    whose outputs meet again. Each output is a view with its own static shape; the code scripts."""
    model = compile_and_verify(SHUFFLE_UNIT)
    graph = model.archc_graph
    assert {n: graph.nodes[n].shape for n in ("halves.0", "halves.1", "parts.0", "parts.1")} == {
        "halves.0": (8, 6, 6),
        "halves.1": (8, 6, 6),
        "parts.0": (4, 6, 6),
        "parts.1": (12, 6, 6),
    }
    assert node_inputs(graph, "branch2.0") == ["halves.1"]
    model.eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        x1, x2 = x.chunk(2, dim=1)
        h = nn.functional.channel_shuffle(torch.cat([x1, model.branch2(x2)], 1), 2)
        p0, p1 = torch.split(h, [4, 12], 1)
        torch.testing.assert_close(model(x), p0 + model.proj(p1))
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
    assert "halves_0 = x[:, :8]" in model.code and "halves_1 = x[:, 8:]" in model.code


def test_uneven_pieces_follow_torch_split_and_chunk() -> None:
    """An int size cuts pieces of that size, the last smaller (torch.split); chunk(4) of 6 gives
    three pieces of 2, as torch.chunk does."""
    model = compile_and_verify(
        "input: [6, 5]\nlayers:\n  - {split: {sizes: 2, dim: 1}, name: s}\n"
        "  - {chunk: {chunks: 4}, name: c, from: s.2}\n  - {concat: , from: [c, s.2]}\n"
    )
    graph = model.archc_graph
    assert [graph.nodes[f"s.{k}"].shape for k in range(3)] == [(6, 2), (6, 2), (6, 1)]
    assert [graph.nodes[f"c.{k}"].shape for k in range(3)] == [(2, 1), (2, 1), (2, 1)]
    assert "c.3" not in graph.nodes and graph.nodes["concat"].shape == (12, 1)
    x = torch.randn(2, 6, 5)
    last = x.split(2, dim=2)[2]
    torch.testing.assert_close(model.eval()(x), torch.cat([*last.chunk(4, dim=1), last], 1))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{relu: , from: h.2}", "'h.2': '2' is out of range; 'h' has 2 outputs: h.0, h.1"),
        ("{relu: , from: h.first}", "'first' is not an output index; 'h' has 2 outputs"),
        ("{relu: , from: c.0}", "'c' has one output, not several; write 'from: c'"),
        ("relu", "'relu' reads the 2 outputs of chunk 'h' (h.0, h.1); pick one with 'from: h.0'"),
        ("{seq: [relu], from: h}", "'seq' reads the 2 outputs of chunk 'h'"),
        (
            "{split: [3, 4], from: h.0}",
            "split sizes [3, 4] add up to 7, but dimension 0 of the 4x5x5 input has 4",
        ),
        ("{split: {sizes: [2, 2], dim: 3}, from: h.0}", "dim=3 is out of range for a 4x5x5 input"),
        ("{chunk: 0, from: h.0}", "chunks"),
        ("{chunk: 2, from: h.0, name: h2}", "the network ends in the 2 outputs of chunk 'h2'"),
        (
            "{chunk: 1, from: h.0, name: h1}",
            "the network ends in the 1 output of chunk 'h1' (h1.0)",
        ),
        ("{chunk: 2, from: h.1, name: aux, head: true}", "an output head is one tensor"),
    ],
)
def test_reading_several_outputs_wrongly_is_a_positioned_error(item: str, message: str) -> None:
    text = (
        f"input: [8, 5, 5]\nlayers:\n  - {{conv: {{out: 8, kernel: "
        f"1}}, name: c}}\n  - {{chunk: 2, name: h}}\n  - {item}\n"
    )
    with pytest.raises(
        SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ) as info:
        api.compile_graph(text)
    assert ":5:" in str(info.value) or ":6:" in str(info.value) or "ends in" in str(info.value)


@pytest.mark.parametrize("reader", ["relu", "{seq: [relu]}", "{chunk: 2}", "{linear: 3}"])
def test_after_an_error_a_split_read_whole_reports_only_that_error(reader: str) -> None:
    """Once an item has failed, the compile goes on to find more errors: a split's outputs read as
    one tensor then continue from its first output instead of crashing on the split's own name."""
    text = (
        "input: [4, 8, 8]\nlayers:\n  - {conv: {out: 4, kernel: 99}}\n"
        f"  - {{chunk: 2, name: h}}\n  - {reader}\n  - relu\n"
    )
    with pytest.raises(SpecError) as info:
        api.compile_graph(text)
    assert str(info.value).count("error") <= 1 and ":3:" in str(info.value)
    assert "does not fit the 8x8 feature map" in str(info.value)


def test_a_block_may_return_a_split_and_reports_name_each_output(tmp_path: Path) -> None:
    """A block whose last item is a split returns its outputs as a tuple; `from: h.1` reads one of
    them. Reports, diagrams and the memory estimate see each output as the view it is."""
    from archc.analysis.memory import is_view

    text = (
        "input: [8, 4, 4]\nblocks:\n  Halves:\n    layers:\n"
        "      - {conv: {out: 16, kernel: 1}, name: c}\n"
        "      - {split: [6, 10], name: parts}\nlayers:\n  - {Halves: , name: h}\n"
        "  - {conv: {out: 4, kernel: 1}, from: h.1, name: p}\n  - {concat: , from: [h.0, p]}\n"
    )
    model = compile_and_verify(text)
    assert "h_parts_0, h_parts_1 = self.h(x)" in model.code
    graph = model.archc_graph
    assert all(is_view(graph.nodes[n]) for n in ("h.parts.0", "h.parts.1"))
    table = str(archc.summary(text))
    assert "parts.0" in table and "split dim 0 [6:16]" in table
    path = tmp_path / "halves.yaml"
    path.write_text(text)
    assert main(["diagram", str(path), "-o", str(tmp_path / "d.dot")]) == 0
    assert "split dim 0 [6:16]" in (tmp_path / "d.dot").read_text()


# --------------------------------------------------------------------------- layouts
def test_layouts_flow_through_permute_flatten_and_transpose_into_reports_and_diagrams(
    tmp_path: Path,
) -> None:
    """C×H×W -> H×W×C (permute) -> L×D tokens (flatten, transpose) and back: each node knows what
    its dimensions are, and tables and diagrams name a layout that is not the rank's default."""
    text = (
        "input: [4, 6, 6]\nlayers:\n  - {conv: {out: 8, kernel: 1}, name: stem}\n"
        "  - {permute: [1, 2, 0], name: hwc}\n  - {layernorm: {dims: 1}, name: norm}\n"
        "  - {linear: {out: 8, channels_last: true}, name: mlp}\n"
        "  - {permute: [2, 0, 1], name: chw}\n  - {flatten: {start: 1}, name: seq}\n"
        "  - {transpose: {dim0: 0, dim1: 1}, name: tokens}\n"
        "  - {self_attention: {heads: 2}, name: attn}\n"
        "  - {select: {dim: 0, index: 0}, name: cls}\n"
    )
    graph = compile_and_verify(text).archc_graph
    assert {n.id: n.layout for n in graph} == {
        "stem": ("C", "H", "W"),
        "hwc": ("H", "W", "C"),
        "norm": ("H", "W", "C"),
        "mlp": ("H", "W", "C"),
        "chw": ("C", "H", "W"),
        "seq": ("C", "L"),
        "tokens": ("L", "C"),
        "attn": ("L", "C"),
        "cls": ("F",),
    }
    table = str(archc.summary(text))
    assert (
        "6x6x8 (H×W×C)" in table
        and "36x8 (L×D)" in table
        and "8x6x6 " in table
        and "8x6x6 (" not in table
    )
    rows = {r["name"]: r for r in archc.analyze(text).rows()}
    assert (
        rows["hwc"]["layout"] == "H×W×C"
        and rows["tokens"]["layout"] == "L×D"
        and rows["seq"]["layout"] == "C×L"
    )
    layers = json.loads(archc.analyze(text).render("json"))
    assert "H×W×C" in json.dumps(
        layers, ensure_ascii=False
    )  # the JSON report carries the layout column
    path = tmp_path / "layouts.yaml"
    path.write_text(text)
    assert main(["diagram", str(path), "-o", str(tmp_path / "d.dot")]) == 0
    assert "6x6x8 (H×W×C)" in (tmp_path / "d.dot").read_text()


# a conv: the input is only a shape
LAYOUT_HEAD = "input: [16, 8, 8]\nlayers:\n  - {conv: {out: 16, kernel: 1}}\n"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            "  - permute: [1, 2, 0]\n  - {conv: {out: 4, kernel: 1}}\n",
            "conv needs a channels-first (C, H, W) map, but its input is "
            "8x8x16 laid out H×W×C; permute: [2, 0, 1] turns it into C×H×W",
        ),
        (
            "  - permute: [1, 2, 0]\n  - maxpool: 2\n",
            "maxpool needs a channels-first (C, H, W) map",
        ),
        (
            "  - permute: [1, 2, 0]\n  - {upsample: {scale: 2}}\n",
            "upsample needs a channels-first (C, H, W) map",
        ),
        (
            "  - permute: [1, 2, 0]\n  - linear: 4\n",
            "linear on a 8x8x16 map laid out H×W×C: write 'channels_last: true' to "
            "apply it at every position (a flatten before it would mix the positions)",
        ),
        (
            "  - {linear: {out: 4, channels_last: true}}\n",
            "channels_last: true on a 16x8x8 map laid out C×H×W would mix its "
            "last dimension W, not the channels; permute: [1, 2, 0] turns it into H×W×C first",
        ),
        (
            "  - linear: 4\n",
            "linear on a 16x8x8 map laid out C×H×W: for a classifier add '- "
            "flatten' before it, for an MLP at every position permute: [1, 2, 0]",
        ),
        (
            "  - flatten: {start: 1}\n  - transpose: {dim0: 0, dim1: 1}\n  - bn\n",
            "bn needs a channels-first (C, H, W) map, but its input is 64x16 laid out L×D",
        ),
        (
            "  - {shifted_window_attention: {heads: 2, window: 4}}\n",
            "shifted_window_attention needs a channels-last (H, W, C) map, but its "
            "input is 16x8x8 laid out C×H×W; permute: [1, 2, 0] turns it into H×W×C",
        ),
        (
            "  - {self_attention: {heads: 2}}\n",
            "self_attention needs an (L, D) token sequence, but its input is 16x8x8 laid out "
            "C×H×W; flatten: {start: 1} then transpose: {dim0: 0, dim1: 1} make L×D tokens",
        ),
        (
            "  - {flatten: {start: 1}}\n  - {conv: {out: 4, kernel: 1}}\n"
            "  - transpose: {dim0: 0, dim1: 1}\n  - {conv: {out: 4, kernel: 1}}\n",
            "conv needs a channels-first (C, H, W) map, but its input is 64x4 laid out "
            "L×D; transpose: {dim0: 0, dim1: 1} makes a C×L sequence",
        ),
        (
            "  - flatten: {start: 1}\n  - {self_attention: {heads: 2}}\n",
            "its input is 16x64 laid out C×L; transpose: {dim0: 0, dim1: 1} makes L×D tokens",
        ),
        (
            "  - {layernorm: {dims: 1}}\n",
            "layernorm over the last 1 dimension(s) of a 16x8x8 input "
            "laid out C×H×W normalises over W, not the features; use "
            "layernorm2d for the channels at each position, or permute",
        ),
        (
            "  - flatten: {start: 1}\n  - layernorm\n",
            "laid out C×L normalises over L, not the features; transpose",
        ),
        (
            "  - {conv: {out: 8, kernel: 1}, name: a}\n"
            "  - {permute: [1, 2, 0], name: b}\n  - {add: , from: [a, b]}\n",
            "'b' is laid out H×W×C but 'a' is C×H×W; permute one to match",
        ),
    ],
)
def test_an_op_given_the_wrong_layout_is_a_positioned_error_with_the_fix(
    items: str, message: str
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        api.compile_graph(LAYOUT_HEAD + items)
    assert str(info.value).startswith("<string>:")


# --------------------------------------------------------------------- did-you-mean for the new ops
@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("splits", "(did you mean 'split'?)"),
        ("chunks", "(did you mean 'chunk'?)"),
        (
            "split_with_sizes",
            "(archc's 'split' takes the sizes: 'split: {sizes: [...], dim: ...}')",
        ),
        (
            "tensor_split",
            "(PyTorch has it, archc does not: 'split' takes the pieces' sizes, "
            "not the cut indices)",
        ),
        ("unbind", "'chunk' cuts one piece per position"),
        (
            "window_partition",
            "'shifted_window_attention' cuts Swin's windows itself; 'partition' cuts MaxViT's",
        ),
        (
            "grid_attention",
            "'partition: {size: ..., mode: grid}', then 'relative_attention', then 'unpartition'",
        ),
        (
            "Attention",
            "archc has 'self_attention' (ViT, nn.MultiheadAttention), "
            "'shifted_window_attention' (Swin)",
        ),
        ("channels_last", "an H×W×C map is 'permute: [1, 2, 0]'"),
    ],
)
def test_names_near_the_new_ops_say_what_archc_writes(typed: str, hint: str) -> None:
    """A name for a computation archc writes otherwise is answered with how, never with the nearest
    spelling (`window_partition` is not `window_attention`, `attention` is three different ops)."""
    with pytest.raises(SpecError) as info:
        api.compile_graph(f"input: [8, 4, 4]\nlayers:\n  - {typed}\n")
    assert hint in str(info.value) and "<string>:3:" in str(info.value)


def test_every_op_the_hints_name_is_registered() -> None:
    from archc import ops
    from archc.compiler.suggest import WRITTEN_AS

    assert {op for _, named in WRITTEN_AS.values() for op in named} <= set(ops.REGISTRY)


def test_a_cut_into_too_many_outputs_is_refused_before_any_is_made() -> None:
    """Each output is a node: a chunk of a 2^40-long dimension into as many pieces is refused at
    once, not after building a trillion bounds."""
    with pytest.raises(SpecError, match=r"makes 1,099,511,627,776 outputs; at most 4,096") as info:
        api.compile_graph("input: [1099511627776]\nlayers:\n  - {split: 1}\n")
    assert str(info.value).startswith("<string>:3:")


def test_a_declared_input_layout_is_checked_from_the_first_op(tmp_path: Path) -> None:
    text = (
        "input: [12, 8]\ninput_layout: [L, D]\nlayers:\n"
        "  - {self_attention: 2, name: attn}\n  - {mean: 0}\n"
    )
    graph = compile_and_verify(text).archc_graph
    assert graph.input_layout == ("L", "C") and graph.nodes["attn"].layout == ("L", "C")
    with pytest.raises(
        SpecError,
        match=re.escape(
            "conv needs a channels-first (C, H, W) map, but its input is 12x8 laid out L×D"
        ),
    ):
        api.compile_graph(
            text.replace("{self_attention: 2, name: attn}", "{conv: {out: 4, kernel: 1}}")
        )
    with pytest.raises(SpecError, match="must name each of the 2 input dimensions once") as info:
        api.compile_graph(text.replace("[L, D]", "[L, L]"))
    assert str(info.value).startswith("<string>:2:")
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    assert main(["diagram", str(path), "-o", str(tmp_path / "d.dot")]) == 0
    assert "12x8 (L×D)" in (tmp_path / "d.dot").read_text()
