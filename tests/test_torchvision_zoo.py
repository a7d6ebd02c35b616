"""Every torchvision classifier the zoo names, against torchvision itself.

For each name: `archc.load(name)` works; state_dict keys and shapes equal torchvision's in order
(both built on the meta device: no memory, no init); parameters equal the weights' published
`num_params` and GMACs their `_ops`, and 2 x MACs equals FlopCounterMode on torchvision's model.
For the smallest model of each family a real forward at a small resolution loads torchvision's
state_dict strictly (BN statistics randomised) and computes the same outputs.

The quick loop (`-m "not slow"`) checks one variant per (family, choices) group (QUICK); CI
checks all 80.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archc import api, zoo
from archc.compiler.emit import build_module
from tests.test_torchvision_parity import (
    assert_close_outputs,
    assert_same_layers,
    perturb_norms,
    uninitialised,
)

# The torchvision names the zoo covers: every classifier of torchvision.models.
COVERED = [
    "alexnet",
    "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
    "googlenet", "inception_v3",
    "maxvit_t",
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
    "regnet_x_16gf", "regnet_x_32gf",
    "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf",
    "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1",
    "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14",
    "wide_resnet50_2", "wide_resnet101_2",
]  # fmt: skip
# Constructor arguments giving the architecture of the published weights (GoogLeNet's drop the
# aux heads, Inception v3's keep its one); init_weights=False skips a slow init that meta ignores.
TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"init_weights": False},
    "vit_h_14": {"image_size": 518},  # the resolution of its published weights (and of the variant)
}
# A real forward for the smallest model of each family not checked in test_torchvision_parity
# (VGG-11 and ResNet-50 are; wide_resnet50_2 is ResNet-50 at another width, checked on meta there),
# at the smallest resolution where it proves the same thing: name -> image size.
FORWARD = {
    "resnext50_32x4d": 64,
    "squeezenet1_0": 64,
    "squeezenet1_1": 64,
    "densenet121": 64,
    "mnasnet0_5": 64,
    "shufflenet_v2_x0_5": 64,
    "mobilenet_v3_small": 64,
    "efficientnet_b0": 64,
    "efficientnet_v2_s": 64,
    "regnet_x_400mf": 64,
    "regnet_y_400mf": 64,
    "convnext_tiny": 32,
}


def torchvision_model(name: str) -> nn.Module:
    return torchvision.models.get_model(name, **TORCHVISION_KWARGS.get(name, {}))


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """torch.device("meta"), except for RegNet's width computation (which needs real tensors).

    The in-place initialisers of torch.nn.init return their tensor untouched: on the meta device
    they write nothing anyway, and their Python is two thirds of a torchvision constructor's CPU.
    """
    from torchvision.models.regnet import BlockParams

    widths = BlockParams.from_init_params.__func__  # type: ignore[attr-defined]

    def on_cpu(cls: type, *args: Any, **kwargs: Any) -> Any:
        with torch.device("cpu"):
            return widths(cls, *args, **kwargs)

    def untouched(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    initialisers = [name for name in vars(nn.init) if name.endswith("_") and name[0] != "_"]
    with contextlib.ExitStack() as stack:
        for name in initialisers:
            stack.enter_context(mock.patch.object(nn.init, name, untouched))
        stack.enter_context(mock.patch.object(BlockParams, "from_init_params", classmethod(on_cpu)))
        stack.enter_context(torch.device("meta"))
        yield


def published(name: str) -> dict[str, Any]:
    """The metadata of the name's first weights (available without a download)."""
    return next(iter(torchvision.models.get_model_weights(name))).meta


def quick_variants(names: list[str]) -> set[str]:
    """The variants the quick loop checks: variants of a family that differ only in sizes
    (depths, widths, channel lists) run the same spec code, while a parameter that chooses a part
    (a string or a boolean: ResNet's basic block, VGG's BN; a number set to 0 that switches a part
    off: RegNetX's squeeze-excitation) takes another path. So: the variant with the fewest
    published GMACs of each (family, choices) group, a stand-alone spec being its own family."""

    def choices(params: dict[str, Any]) -> frozenset[tuple[str, Any]]:
        return frozenset(
            (key, value)
            for key, value in params.items()
            if isinstance(value, (str, bool)) or (isinstance(value, (int, float)) and value == 0)
        )

    smallest: dict[tuple[str, frozenset[tuple[str, Any]]], str] = {}
    for name in sorted(names, key=lambda n: (published(n)["_ops"], n)):
        model = zoo.resolve(name)
        smallest.setdefault((model.family or model.name, choices(model.params)), name)
    return set(smallest.values())


QUICK = quick_variants(COVERED)


@pytest.fixture
def gc_paused() -> Iterator[None]:
    """No garbage collection while a test builds two models of thousands of modules: the
    collector would walk the whole heap many times over (a fifth of the test's CPU), and what
    the test leaves is collected after it."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def test_every_torchvision_classifier_is_covered_and_in_the_zoo() -> None:
    classifiers = set(torchvision.models.list_models(module=torchvision.models))
    assert set(COVERED) == classifiers and len(COVERED) == len(classifiers) == 80
    assert set(COVERED) <= set(zoo.names())


def test_the_quick_variants_cover_every_family_and_every_choice() -> None:
    """The rule keeps the smallest variant of each family and both sides of each choice."""
    assert {
        "resnet18",
        "resnet50",
        "vgg11",
        "vgg11_bn",
        "regnet_x_400mf",
        "regnet_y_400mf",
    } <= QUICK
    assert {zoo.resolve(n).family or n for n in QUICK} == {
        zoo.resolve(n).family or n for n in COVERED
    }
    assert not {"resnet34", "vgg13", "vit_h_14", "regnet_y_128gf"} & QUICK


@pytest.mark.usefixtures("gc_paused")
@pytest.mark.parametrize(
    "name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in COVERED]
)
def test_keys_shapes_params_and_macs_equal_torchvision(name: str) -> None:
    graph = api.compile_graph(name)
    assert graph.name == name
    with meta_device():
        ours = build_module(graph, None)
        theirs = torchvision_model(name).eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    meta = published(name)
    assert graph.total_params == meta["num_params"]
    assert round(graph.total_macs / 1e9, 3) == meta["_ops"]
    # without autograd's bookkeeping (a third of the count's CPU): the same forward ops counted
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        theirs(torch.zeros(1, *graph.input_shape, device="meta"))
    assert counter.get_total_flops() == 2 * graph.total_macs


@pytest.mark.parametrize("name", list(FORWARD))
def test_loads_torchvision_weights_and_computes_the_same(name: str) -> None:
    size = FORWARD[name]
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    perturb_norms(theirs)
    ours = uninitialised(api.compile_graph(name, image_size=size)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert_close_outputs(ours(x), theirs(x))


def test_vit_loads_torchvisions_weights_and_computes_the_same() -> None:
    """ViT-B/16 at 32x32 (4 patches and the class token), learned tensors and norms randomised."""
    torch.manual_seed(0)
    theirs = torchvision.models.vit_b_16(image_size=32).eval()
    perturb_norms(theirs)
    with torch.no_grad():
        theirs.class_token.normal_()
        theirs.encoder.pos_embedding.normal_()
    ours = uninitialised(api.compile_graph("vit_b_16", image_size=32)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    x = torch.randn(2, 3, 32, 32)
    assert_close_outputs(ours(x), theirs(x))  # with grad: MultiheadAttention's general path
    with torch.no_grad():
        assert_close_outputs(ours(x), theirs(x))  # without: its fused fast path


def test_convnext_trains_as_torchvisions_same_stochastic_depth_draws() -> None:
    """Training mode: the per-block stochastic depth (torchvision's linear rule) draws alike."""
    torch.manual_seed(0)
    theirs = torchvision_model("convnext_tiny").train()
    perturb_norms(theirs)
    ours = uninitialised(api.compile_graph("convnext_tiny", image_size=32)).train()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    mine = ours(x)
    torch.manual_seed(1)
    assert_close_outputs(mine, theirs(x))
    torch.manual_seed(2)
    assert not torch.equal(ours(x), mine)  # the draws are live in training


# A MaxViT small enough for every test run: stages of 16x16 down to 2x2 maps, partition size 2
# (window and grid attention both non-trivial in the first stages), as spec overrides and as
# torchvision's own MaxVit constructor arguments.
SMALL_MAXVIT = {
    "stem_channels": 16,
    "block_channels": [16, 32, 48, 64],
    "block_layers": [1, 2, 1, 1],
    "head_dim": 8,
    "partition_size": 2,
}


def small_maxvits() -> tuple[nn.Module, nn.Module]:
    """(ours, torchvision's) at 64x64, torchvision's weights loaded strictly into ours, BN
    statistics, norms and relative position bias tables randomised."""
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    theirs = MaxVit(input_size=(64, 64), stochastic_depth_prob=0.2, **SMALL_MAXVIT)
    perturb_norms(theirs)
    with torch.no_grad():
        for name, table in theirs.named_parameters():
            if name.endswith("relative_position_bias_table"):
                table.normal_()
    ours = uninitialised(api.compile_graph("maxvit_t", image_size=64, **SMALL_MAXVIT))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    return ours, theirs


def test_maxvit_computes_torchvisions_outputs_and_stochastic_depth_draws() -> None:
    """Eval outputs equal; in training the per-layer stochastic depth (torchvision's linspace
    schedule, shared by a layer's MBConv and both attentions) draws alike and is live."""
    ours, theirs = small_maxvits()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert_close_outputs(ours.eval()(x), theirs.eval()(x))
    ours.train()
    theirs.train()
    torch.manual_seed(1)
    mine = ours(x)
    torch.manual_seed(1)
    assert_close_outputs(mine, theirs(x))
    torch.manual_seed(2)
    assert not torch.equal(ours(x), mine)


def test_maxvit_stochastic_depth_follows_torchvisions_schedule() -> None:
    """MBConv, window and grid attention of each layer drop with linspace(0, 0.2, 11)[layer]."""
    import numpy as np

    graph = api.compile_graph("maxvit_t")
    probabilities = [n.args.p for n in graph if n.op == "stochastic_depth"]
    schedule = np.linspace(0, 0.2, 11)
    assert len(probabilities) == 5 * 11  # MBConv's, and two per attention layer
    assert probabilities == pytest.approx([p for p in schedule for _ in range(5)], abs=1e-15)


@pytest.mark.slow
def test_maxvit_t_computes_torchvisions_outputs_at_224() -> None:
    """MaxViT-T itself at its only resolution (every stage's map divisible by 7)."""
    torch.manual_seed(0)
    theirs = torchvision_model("maxvit_t").eval()
    perturb_norms(theirs)
    with torch.no_grad():
        for name, table in theirs.named_parameters():
            if name.endswith("relative_position_bias_table"):
                table.normal_()
    ours = uninitialised(api.compile_graph("maxvit_t")).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert_close_outputs(ours(x), theirs(x))


def test_a_variant_is_its_family_spec_with_the_variants_parameters() -> None:
    spec = api.load("resnext101_32x8d", num_classes=10)
    assert spec.name == "resnext101_32x8d"
    assert spec.path.endswith("resnet.yaml")
    assert spec.overrides == {"blocks3": 23, "groups": 32, "width": 8, "num_classes": 10}
    assert api.load(spec.path).name == "resnet"  # by path: the family's defaults (ResNet-50)


# stand-alone files that a family's variant now names (kept for the paths docs and users cite)
SHADOWED = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]


@pytest.mark.parametrize("name", SHADOWED)
def test_a_stand_alone_file_is_the_same_model_as_its_family_variant(name: str) -> None:
    """specs/resnet18.yaml and `resnet18` (resnet.yaml's variant): node for node the same graph."""

    def nodes(spec: Any) -> list[tuple[Any, ...]]:
        return [(n.id, n.op, n.args, n.shape, n.params, n.module) for n in api.compile_graph(spec)]

    path = zoo.specs_dir() / f"{name}.yaml"
    assert zoo.resolve(name).family is not None and path.is_file()
    assert nodes(path) == nodes(name)


@pytest.mark.slow  # two 28M-parameter models built and initialised: seconds
@pytest.mark.parametrize(("name", "size"), [("swin_t", 32), ("swin_v2_t", 48)])
def test_swin_loads_torchvisions_weights_and_computes_the_same(name: str, size: int) -> None:
    """At the smallest size where the first stage's windows shift, are masked and padded (8x8 in
    7x7 windows, 12x12 in 8x8 windows); position biases, logit scales (some above the clamp at
    log 100) and norms randomised. In training the stochastic depth draws (torchvision's linear
    rule) are torchvision's, and live."""
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    perturb_norms(theirs)
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, torchvision.models.swin_transformer.ShiftedWindowAttention):
                getattr(module, "relative_position_bias_table", torch.empty(0)).normal_()
                getattr(module, "logit_scale", torch.empty(0)).uniform_(0.0, 5.0)
    ours = uninitialised(api.compile_graph(name, image_size=size)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert_close_outputs(ours(x), theirs(x))
        ours.train()
        theirs.train()
        torch.manual_seed(1)
        mine = ours(x)
        torch.manual_seed(1)
        assert_close_outputs(mine, theirs(x))
        torch.manual_seed(2)
        assert not torch.equal(ours(x), mine)
