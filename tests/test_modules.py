"""Blocks are real modules: hooks, indexing, calling and replacing submodules, torchinfo, feature
extraction and activation checkpointing behave as on torchvision's hand-written models.

Torchvision comparisons load torchvision's weights into the spec's model (same state_dict keys)
and run small inputs (64x64) so the suite stays cheap.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from archc import api
from archc.compiler.emit import execute
from archc.compiler.names import MODULE_ATTRIBUTES
from tests.conftest import compile_and_verify

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _pair(spec: str, theirs: nn.Module, **overrides: Any) -> tuple[nn.Module, nn.Module]:
    ours = api.build(SPECS / f"{spec}.yaml", image_size=64, **overrides)
    ours.load_state_dict(theirs.state_dict())
    return ours.eval(), theirs.eval()


@pytest.fixture(scope="module")
def resnet18() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return _pair("resnet18", torchvision.models.resnet18())


def test_hook_on_the_last_block_fires_with_torchvision_s_tensor(
    resnet18: tuple[nn.Module, nn.Module],
) -> None:
    ours, theirs = resnet18
    seen: dict[str, torch.Tensor] = {}
    ours.layer4[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("ours", o))
    theirs.layer4[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("theirs", o))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    assert seen["ours"].shape == (2, 512, 2, 2)
    torch.testing.assert_close(seen["ours"], seen["theirs"])


def test_submodules_index_slice_call_and_replace_like_torchvision(
    resnet18: tuple[nn.Module, nn.Module],
) -> None:
    ours, theirs = resnet18
    assert len(ours.layer1) == 2 and type(ours.layer4[-1]).__name__ == "BasicBlock"
    assert [type(b).__name__ for b in ours.layer2] == [
        "BasicBlock",
        "BasicBlock",
    ]  # downsample: optional
    assert ours.layer1[0].downsample is None and isinstance(
        ours.layer2[0].downsample, nn.Sequential
    )
    assert isinstance(ours.layer2[:1], nn.Sequential) and len(ours.layer2[:1]) == 1
    x = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.layer1(x), theirs.layer1(x))  # a stage called alone
        torch.testing.assert_close(ours.layer2[0](x), theirs.layer2[0](x))  # a block called alone
        torch.testing.assert_close(ours.layer2[0].downsample(x), theirs.layer2[0].downsample(x))
        features = nn.Sequential(*list(ours.children())[:-3])  # drop avgpool, flatten, fc
        assert features(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    x_in = torch.randn(1, 64, 8, 8)
    before = x_in.clone()
    ours.layer1[0](x_in)
    assert torch.equal(x_in, before)  # a block never writes into its caller's tensor
    clone = api.build(SPECS / "resnet18.yaml", image_size=64)
    clone.layer4 = nn.Identity()
    clone.fc = nn.Identity()
    assert clone(torch.randn(1, 3, 64, 64)).shape == (1, 256)


def test_torchinfo_sees_every_stage_with_torchvision_s_shapes(
    resnet18: tuple[nn.Module, nn.Module],
) -> None:
    import torchinfo

    ours, theirs = resnet18

    def rows(model: nn.Module) -> list[tuple[int, str, list[int]]]:
        info = torchinfo.summary(model, input_size=(1, 3, 64, 64), depth=3, verbose=0)
        return [
            (r.depth, r.var_name, r.output_size)
            for r in info.summary_list
            if r.depth and r.var_name != "flatten"
        ]

    mine = rows(ours)
    assert mine == rows(theirs)
    assert (1, "layer4", [1, 512, 2, 2]) in mine and any(depth == 3 for depth, _, _ in mine)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "nodes"),
    [
        (
            "resnet50",
            ["layer1", "layer2.3", "layer3.0.downsample", "layer4.2.conv3", "avgpool", "fc"],
        ),
        (
            "googlenet",
            ["conv3", "inception3b", "inception4a.branch2", "maxpool4", "inception5b", "fc"],
        ),
    ],
)
def test_feature_extractor_with_torchvision_s_node_names(spec: str, nodes: list[str]) -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    extra = {"aux_logits": False, "init_weights": False} if spec == "googlenet" else {}
    ours, theirs = _pair(spec, getattr(torchvision.models, spec)(**extra))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = create_feature_extractor(ours, return_nodes=nodes)(x)
        want = create_feature_extractor(theirs, return_nodes=nodes)(x)
    assert list(got) == nodes
    for name in nodes:
        torch.testing.assert_close(got[name], want[name])


CHECKPOINTED = """
name: ckpt
input: [4, 8, 8]
blocks:
  Res:
    params: {c: null}
    layers:
      - add:
          - [{conv: {out: $c, kernel: 3, padding: 1}}, bn, relu,
             {conv: {out: $c, kernel: 3, padding: 1}}, bn]
          - []
        then: relu
layers:
  - {conv: {out: 8, kernel: 3, padding: 1}, name: stem}
  - {Res: {c: 8}, name: block1, checkpoint: CKPT}
  - seq: [{Res: {c: 8}}, {Res: {c: 8}}]
    name: stage
    checkpoint: CKPT
  - global_avgpool
  - flatten
  - {linear: 3, name: fc}
"""


def test_checkpointed_blocks_give_the_same_gradients(write_spec) -> None:
    plain = api.build(write_spec(CHECKPOINTED.replace("CKPT", "false")))
    ckpt = api.build(write_spec(CHECKPOINTED.replace("CKPT", "true")))
    ckpt.load_state_dict(plain.state_dict())
    assert (
        "torch.utils.checkpoint.checkpoint(self.block1, " in ckpt.code
        and "torch.utils" not in plain.code
    )
    x = torch.randn(3, 4, 8, 8)
    grads = []
    for model in (plain, ckpt):
        model.train()
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(ckpt.eval())
    torch.testing.assert_close(scripted(x), ckpt(x))


def test_checkpoint_is_only_for_modules(write_spec) -> None:
    from archc.errors import SpecError

    with pytest.raises(SpecError, match="'checkpoint' applies to a block call or a seq"):
        api.compile_graph(write_spec("input: [3, 8, 8]\nlayers:\n  - {relu: , checkpoint: true}\n"))


NAMES = """
name: names
input: [3, 8, 8]
blocks:
  Unit:
    layers:
      - {conv: {out: 4, kernel: 3, padding: 1}, name: "block1-0"}
      - {relu: , name: "None"}
layers:
  - {Unit: , name: block}
  - seq: [{conv: {out: 4, kernel: 1}, name: if}, {bn: , name: class}]
    name: features
  - {Unit: , name: "ünïcode"}
  - {conv: {out: 4, kernel: 1}, name: "ﬁx"}
  - {add: , from: [block, "ünïcode"], name: lambda}
  - {relu: , name: "a b"}
"""


def test_any_name_add_module_accepts_compiles_exports_and_round_trips(
    write_spec, tmp_path: Path
) -> None:
    from archc.cli import main
    from archc.compiler.export import export_python

    path = write_spec(NAMES)
    assert main(["check", str(path)]) == 0
    model = compile_and_verify(path)
    keys = list(model.state_dict())
    assert {
        "block.block1-0.weight",
        "features.if.weight",
        "features.class.running_mean",
        "ünïcode.block1-0.bias",
        "ﬁx.weight",
    } <= set(keys)
    source = export_python(model.archc_graph, None, str(path))
    assert source == model.code  # build runs exactly what export writes
    exported = execute(source, "names_export.py")["Names"]()
    exported.load_state_dict(model.state_dict())
    assert list(exported.state_dict()) == keys
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    exported.eval()
    torch.testing.assert_close(exported(x), model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))


def test_the_reserved_names_are_torch_s_module_attributes() -> None:
    """What nn.Module and nn.Sequential hold once torch.compile has run in the process (dynamo
    marks nn.Module as patched; a test before this one may have compiled, or not)."""
    from torch._dynamo.mutation_guard import install_generation_tagging_init

    install_generation_tagging_init()
    live = set(dir(nn.Sequential)) | set(dir(nn.Module)) | set(vars(nn.Sequential()))
    assert live <= MODULE_ATTRIBUTES | {"__firstlineno__", "__static_attributes__"}


CONTAINERS = """
name: containers
input: [4, 8, 8]
blocks:
  Unit:
    params: {c: 4}
    layers:
      - add:
          - [{conv: {out: $c, kernel: 3, padding: 1}, name: conv}, {bn: , name: bn}]
          - []
        then: {relu: , name: relu}
layers:
  - {Unit: , name: block}
  - seq: [{conv: {out: 4, kernel: 1}}, bn, relu]
    name: features
  - add:
      - {seq: [{conv: {out: 4, kernel: 1}}, bn], name: branch}
      - [{conv: {out: 4, kernel: 1}, name: side}]
  - {Unit: , repeat: 3, name: stage}
  - {conv: {out: 4, kernel: 1}, repeat: 2, name: convs, then: relu}
  - global_avgpool
  - flatten
  - {linear: 3, name: fc}
"""
# path -> runs in sequence (behaves like nn.Sequential)
CONTAINER_KINDS = {
    "block": False,
    "features": True,
    "branch": True,
    "stage": True,
    "stage.2": False,
    "convs": True,
}


class _Counted(nn.Module):
    """Wraps a module and counts its calls: the parent's forward must
    call what its attribute holds."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_every_named_container_is_a_module(write_spec) -> None:
    """A block call, a named seq, a named seq as a branch and a named repeat (of a block or an op)
    are each a real module: hooks fire, it runs alone, it can be replaced, and those that run in
    sequence index, slice and iterate like nn.Sequential. Unnamed
    branch lists stay in the parent."""
    torch.manual_seed(0)
    model = compile_and_verify(write_spec(CONTAINERS)).eval()
    keys = set(model.state_dict())
    assert {"side.weight", "stage.2.conv.weight", "convs.2.weight", "branch.1.running_mean"} <= keys
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        want = model(x)
    for path, sequential in CONTAINER_KINDS.items():
        module = model.get_submodule(path)
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        handle = module.register_forward_hook(lambda m, i, o, seen=seen: seen.append((i[0], o)))
        with torch.no_grad():
            torch.testing.assert_close(model(x), want)
            assert len(seen) == 1, path  # the hook fired, once
            torch.testing.assert_close(module(seen[0][0]), seen[0][1])  # runs alone on its input
        handle.remove()
        assert isinstance(module, nn.Sequential) == sequential, path
        if sequential:
            assert len(module) == len(list(module)) >= 2 and module[-1] is list(module)[-1]
            assert isinstance(module[:1], nn.Sequential) and len(module[:1]) == 1
            with torch.no_grad():
                torch.testing.assert_close(module[:](seen[0][0]), seen[0][1])
        parent_path, _, leaf = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        counted = _Counted(module)
        setattr(parent, leaf, counted) if not leaf.isdigit() else parent.__setitem__(
            int(leaf), counted
        )
        with torch.no_grad():
            torch.testing.assert_close(model(x), want)  # the replacement is what runs
        assert counted.calls == 1, path
        setattr(parent, leaf, nn.Identity()) if not leaf.isdigit() else parent.__setitem__(
            int(leaf), nn.Identity()
        )
        with torch.no_grad():
            assert not torch.allclose(model(x), want), path
        setattr(parent, leaf, module) if not leaf.isdigit() else parent.__setitem__(
            int(leaf), module
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(torch.jit.script(model)(x), want)


def test_a_repeat_named_with_its_variable_names_each_repetition(write_spec) -> None:
    model = api.build(
        write_spec("""
        input: [4, 8, 8]
        layers:
          - {conv: {out: 4, kernel: 1}, name: "c${i}", repeat: 2}
          - {conv: {out: 4, kernel: 1}, name: pair, repeat: 2}
    """)
    )
    assert list(model.state_dict()) == [
        "c0.weight",
        "c0.bias",
        "c1.weight",
        "c1.bias",
        "pair.0.weight",
        "pair.0.bias",
        "pair.1.weight",
        "pair.1.bias",
    ]
