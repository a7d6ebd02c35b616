"""The spec zoo (specs/*.yaml) and `archc zoo`.

Every spec compiles; its static shapes, parameters, buffers and MACs equal what the emitted module
does at runtime; its parameter count is the number written here (from torchvision's reference JSON,
the seed reference models or the papers); its header states the same figures; one training step
runs. Where a ground-truth PyTorch model exists, its state_dict loads
strictly and the outputs agree.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import SqueezeExcitation

from archc import api, zoo
from archc.analysis.report import si
from archc.cli import main
from archc.commands.zoo import collect, default_specs_dir, header_line, render_markdown
from archc.compiler.emit import count_tensors, probe_shapes
from archc.compiler.export import export_python
from archc.errors import SpecError
from tests import reference_models as ref
from tests.conftest import assert_node_tensor_counts, run_python

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))
NAMES = [p.stem for p in SPEC_FILES]

# Default-parameter counts, written down from independent sources.
EXPECTED_PARAMS = {
    # torchvision (tests/data/torchvision_models.json, num_params)
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "inception_v3": 23_834_568,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "mobilenet_v2": 3_504_872,  # torchvision's own metadata (num_params)
    # family specs at their defaults (their variants: tests/test_torchvision_zoo.py)
    "resnet": 25_557_032,  # ResNet-50
    "vgg": 138_357_544,  # VGG-16
    "densenet": 7_978_856,  # DenseNet-121
    "squeezenet": 1_248_424,  # SqueezeNet 1.0
    "mnasnet": 4_383_312,  # MNASNet 1.0
    # the GoogLeNet-CIFAR post's first GoogLeNet (tests/test_googlenet_fidelity.py)
    "googlenet_paper": 5_979_642,
    "shufflenet_v2": 2_278_604,  # ShuffleNetV2 x1.0
    "mobilenet_v3": 5_483_032,  # MobileNetV3-Large
    "efficientnet": 5_288_548,  # EfficientNet-B0
    "efficientnet_v2": 21_458_488,  # EfficientNetV2-S
    "regnet": 4_344_144,  # RegNetY-400MF
    "convnext": 28_589_128,  # ConvNeXt-Tiny
    "vit": 86_567_656,  # ViT-B/16
    "swin": 28_288_354,  # Swin-T
    "swin_v2": 28_351_570,  # Swin V2-T
    "maxvit": 30_919_624,  # MaxViT-T
    # seeds (tests/reference_models.py, /tmp seed notes)
    "lenet5": 61_706,
    "lenet_d2l": 61_706,
    "alexnet_d2l": 46_764_746,
    "alexnet_small": 45_406_986,
    "fmnist_net": 3_241_354,
    "vgg11_d2l": 128_806_154,
    "resnet_cifar": 195_738,
    "vgg_bn_cifar": 207_002,
    "inception_cifar": 107_596,
    "googlenet_cifar": 5_986_394,
    "inception_block_v3": 172_768,
    "resnet18_d2l": 11_178_378,
    # classics: He et al. 2016 option A (0.27M / 0.46M / 0.85M), DenseNet-BC-100 k=12 (0.8M), d2l
    # NiN, and resnet20 + 3 x (49 + 162 + 580) SE parameters
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet56": 853_018,
    "densenet_bc_cifar": 769_162,
    "nin": 1_992_166,
    "se_resnet20": 272_095,
}
IMAGENET = {
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "googlenet",
    "inception_v3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "mobilenet_v2",
    "resnet",
    "vgg",
    "densenet",
    "squeezenet",
    "mnasnet",
    "shufflenet_v2",
    "mobilenet_v3",
    "efficientnet",
    "efficientnet_v2",
    "regnet",
    "convnext",
    "vit",
    "swin",
    "swin_v2",
    "maxvit",
}
OUTPUT_SHAPES = {name: (1000,) if name in IMAGENET else (10,) for name in EXPECTED_PARAMS}
OUTPUT_SHAPES["inception_block_v3"] = (256, 35, 35)
# A training step on these takes several seconds each (100M+ parameters or 224x224 ResNets): their
# train step runs on the meta device.
HEAVY = {
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg11_d2l",
    "resnet34",
    "resnet50",
    "resnet101",
    "inception_v3",
    "resnet",
    "vgg",
    "densenet",
    "squeezenet",
    "efficientnet",
    "efficientnet_v2",
    "regnet",
    "convnext",
    "vit",
    "swin",
    "swin_v2",
    "maxvit",
}

# (spec, overrides, params): the documented switches of the specs.
VARIANTS: list[tuple[str, dict[str, Any], int]] = [
    ("googlenet", {"aux": True}, 13_004_888),  # the JSON's googlenet_aux
    ("inception_v3", {"aux": True}, 27_161_264),  # torchvision aux_logits=True
    ("googlenet_cifar", {"aux": True}, 10_337_134),
    ("googlenet_cifar", {"conv_bias": False, "bn_eps": 0.001}, 5_979_178),
    ("googlenet_cifar", {"bn": False}, 5_971_962),
    ("googlenet_paper", {"aux": True}, 10_329_870),
    ("vgg11_d2l", {"ratio": 4}, 43_093_322),
    ("vgg_bn_cifar", {"bn": False}, 206_170),
    ("vgg11", {"bn": True}, 132_868_840),
    ("vgg16_bn", {"bn": False}, 138_357_544),
    ("vgg19", {"bn": True}, 143_678_248),
    ("alexnet_small", {"image_size": 64}, 3_463_946),  # the `make demo` configuration
    ("resnet50", {"width": 128}, 68_883_240),  # torchvision wide_resnet50_2
    ("resnet18", {"num_classes": 10}, 11_689_512 - 512 * 990 - 990),
    ("resnet20", {"n": 5}, 464_154),
    ("resnet20", {"n": 9}, 853_018),
]


def spec_params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


# ---------------------------------------------------------------------------------------------
# every spec: static figures
# ---------------------------------------------------------------------------------------------


def test_every_spec_has_an_expected_count() -> None:
    assert sorted(NAMES) == sorted(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", NAMES)
def test_compiles_with_the_expected_figures(name: str) -> None:
    spec = api.load(SPECS / f"{name}.yaml")
    graph = api.compile_graph(spec)
    assert graph.name == name
    assert graph.total_params == EXPECTED_PARAMS[name]
    assert graph.shape_of(graph.output) == OUTPUT_SHAPES[name]
    assert spec.model.description
    assert (
        not graph.heads
    )  # aux heads are opt-in (aux=true), so default counts are the inference models


MAC_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9}


@pytest.mark.parametrize("name", NAMES)
def test_header_states_what_it_compiles_to(name: str) -> None:
    """The leading comment says what the spec reproduces, with its parameter count and MACs."""
    text = (SPECS / f"{name}.yaml").read_text()
    header = "\n".join(
        line for line in text.split("\nname:")[0].splitlines() if line.startswith("#")
    )
    assert header, "a spec starts with a comment saying what it reproduces"
    graph = api.compile_graph(SPECS / f"{name}.yaml")
    params = re.search(r"([\d,]+) params", header)
    assert params and int(params.group(1).replace(",", "")) == graph.total_params
    macs = re.search(r"(\d+(?:\.(\d+))?) ([KMG])MACs", header)
    assert macs, "the header states the MACs"
    decimals = len(macs.group(2) or "")
    assert round(graph.total_macs / MAC_UNITS[macs.group(3)], decimals) == float(macs.group(1))


@pytest.mark.parametrize(("name", "overrides", "params"), VARIANTS, ids=lambda v: str(v))
def test_documented_switches(name: str, overrides: dict[str, Any], params: int) -> None:
    assert api.compile_graph(SPECS / f"{name}.yaml", **overrides).total_params == params


@pytest.mark.parametrize(
    ("plain", "bn"), [("vgg11", "vgg11_bn"), ("vgg16", "vgg16_bn"), ("vgg19", "vgg19_bn")]
)
def test_vgg_bn_switch_gives_the_bn_spec(plain: str, bn: str) -> None:
    """`--set bn=true` on vggN is vggN_bn node for node (same names, ops and shapes)."""

    def nodes(name: str, **overrides: Any) -> list[tuple[str, str, tuple[int, ...]]]:
        return [
            (n.id, n.op, n.shape) for n in api.compile_graph(SPECS / f"{name}.yaml", **overrides)
        ]

    assert nodes(plain, bn=True) == nodes(bn)
    assert nodes(bn, bn=False) == nodes(plain)


# ---------------------------------------------------------------------------------------------
# every spec: the emitted module
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", spec_params(NAMES))
def test_runtime_matches_static_and_trains(name: str) -> None:
    """Static shapes, MACs, parameters and buffers equal the emitted module's at the spec's own
    input (on the meta device: they need no values), and a train step reaches every parameter.
    The step runs on real tensors (a finite loss) for all but the heavy models, at 64x64 where the
    spec takes an image size; the heavy ones' real outputs are
    torchvision's (test_torchvision_*)."""
    with torch.device("meta"):
        # .to("meta"): torch.normal (a learned tensor's init) ignores the device context
        model = api.build(SPECS / f"{name}.yaml").to("meta")
    graph = model.archc_graph
    model.eval()
    x = torch.empty(1, *graph.input_shape, device="meta")
    with torch.no_grad():
        shapes = probe_shapes(model, x)
    assert {n.id: shapes.get(n.id) for n in graph} == {n.id: n.shape for n in graph}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        assert tuple(model(x).shape) == (1, *OUTPUT_SHAPES[name])
    assert counter.get_total_flops() == 2 * graph.macs(include_train_only=True)
    params, buffers = count_tensors(model)
    assert params == graph.total_params == EXPECTED_PARAMS[name]
    assert buffers == graph.total_buffers == sum(b.numel() for b in model.buffers())
    assert_node_tensor_counts(model, graph)
    if name not in HEAVY:
        torch.manual_seed(0)
        small = {"image_size": 64} if graph.input_shape[-1] > 64 else {}
        try:
            model = api.build(SPECS / f"{name}.yaml", **small)
        except SpecError:
            model = api.build(SPECS / f"{name}.yaml")
    model.train()
    device = next(model.parameters()).device
    graph = model.archc_graph
    out = model(torch.randn(2, *graph.input_shape, device=device))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, *graph.shape_of(graph.output))
    loss = out.float().square().mean()
    loss.backward()
    assert device.type == "meta" or torch.isfinite(loss)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", ["googlenet_cifar", "googlenet"])
def test_aux_heads_are_train_only_outputs(name: str) -> None:
    model = api.build(SPECS / f"{name}.yaml", aux=True)
    graph = model.archc_graph
    # outputs in torchvision's and the post's order (main, aux2, aux1); aux1's modules come first
    assert [(h.name, h.loss_weight, h.train_only) for h in model.archc_heads] == [
        ("aux2", 0.3, True),
        ("aux1", 0.3, True),
    ]
    assert list(
        dict.fromkeys(k.split(".")[0] for k in model.state_dict() if k.startswith("aux"))
    ) == ["aux1", "aux2"]
    # the heads read 4a and 4d; the main flow goes on from 5b past the head declarations
    assert graph.nodes["avgpool"].inputs == ["inception5b.concat"]
    assert graph.nodes["aux1.averagePool" if name == "googlenet_cifar" else "aux1.0"].inputs == [
        "inception4a.concat"
    ]
    assert (
        graph.macs(include_train_only=True)
        > graph.total_macs
        == api.compile_graph(SPECS / f"{name}.yaml").total_macs
    )
    x = torch.randn(2, *graph.input_shape)
    classes = OUTPUT_SHAPES[name][0]
    outs = model.train()(x)
    assert isinstance(outs, tuple) and [tuple(o.shape) for o in outs] == [(2, classes)] * 3
    sum(o.square().mean() for o in outs).backward()
    with torch.no_grad():
        out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, classes)


def test_alexnet_small_compiles_for_the_demo_image_size() -> None:
    """`make demo` trains alexnet_small at 64x64: the linear layer's input is inferred (256*3*3)."""
    model = api.build(SPECS / "alexnet_small.yaml", image_size=64)
    assert model.archc_graph.input_shape == (1, 64, 64)
    assert model.get_submodule("12").in_features == 256 * 3 * 3
    assert tuple(model(torch.randn(2, 1, 64, 64)).shape) == (2, 10)


# ---------------------------------------------------------------------------------------------
# ground truth: the hand-written seed models and the classics
# ---------------------------------------------------------------------------------------------


def nin_d2l() -> nn.Sequential:
    """d2l's NiN (section 7.3), verbatim apart from names."""

    def nin_block(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, s, p),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 1),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 1),
            nn.ReLU(),
        )

    return nn.Sequential(
        nin_block(1, 96, 11, 4, 0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, 5, 1, 2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, 3, 1, 1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, 10, 3, 1, 1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


def densenet_bc_100() -> nn.Module:
    """torchvision's DenseNet with the CIFAR stem (one 3x3 conv, no BN/ReLU/pool before block 1)."""
    model = torchvision.models.DenseNet(
        growth_rate=12, block_config=(16, 16, 16), num_init_features=24, bn_size=4, num_classes=10
    )
    model.features.conv0 = nn.Conv2d(3, 24, kernel_size=3, padding=1, bias=False)
    model.features.norm0 = nn.Identity()
    model.features.relu0 = nn.Identity()
    model.features.pool0 = nn.Identity()
    return model


class SEBasicBlock(nn.Module):
    """The option-A CIFAR basic block with torchvision's
    SqueezeExcitation on the residual branch."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes, planes // 16)
        self.shortcut = (
            ref.PadShortcut(in_planes, planes)
            if stride != 1 or in_planes != planes
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class SEResNet20(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks.append(
                nn.Sequential(
                    *(
                        SEBasicBlock(
                            in_planes if i == 0 else planes, planes, stride if i == 0 else 1
                        )
                        for i in range(3)
                    )
                )
            )
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = blocks
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(F.avg_pool2d(out, out.size(3)), 1))


# (spec, overrides, ground-truth builder, state_dict keys in the same order)
GROUND_TRUTH: list[tuple[str, dict[str, Any], Callable[[], nn.Module], bool]] = [
    ("lenet5", {}, ref.lenet5, True),
    ("lenet_d2l", {}, ref.lenet_d2l, True),
    ("alexnet_d2l", {}, ref.alexnet_d2l, True),
    ("alexnet_small", {}, ref.alexnet_small, True),
    ("fmnist_net", {}, ref.fmnist_net, True),
    ("vgg11_d2l", {}, ref.vgg11_d2l, True),
    ("vgg11_d2l", {"ratio": 4}, lambda: ref.vgg11_d2l(ratio=4), True),
    ("resnet18_d2l", {}, ref.resnet18_d2l, False),  # d2l registers conv1, conv2, conv3, bn1, bn2
    ("resnet_cifar", {}, ref.resnet_cifar, True),
    ("vgg_bn_cifar", {}, ref.vgg_bn_cifar, True),
    ("vgg_bn_cifar", {"bn": False}, lambda: ref.vgg_bn_cifar(batch_norm=False), True),
    ("inception_cifar", {}, ref.inception_cifar, True),
    ("googlenet_cifar", {}, ref.googlenet_cifar, True),
    ("googlenet_cifar", {"aux": True}, lambda: ref.googlenet_cifar(aux_logits=True), True),
    (
        "googlenet_cifar",
        {"conv_bias": False, "bn_eps": 0.001},
        lambda: ref.googlenet_cifar(conv_bias=False, bn_eps=1e-3),
        True,
    ),
    ("inception_block_v3", {}, ref.inception_block_v3, True),
    ("resnet20", {}, ref.resnet20, True),
    ("resnet32", {}, ref.resnet32, True),
    ("resnet56", {}, ref.resnet56, True),
    ("densenet_bc_cifar", {}, densenet_bc_100, True),
    ("nin", {}, nin_d2l, True),
    ("se_resnet20", {}, SEResNet20, True),
]


@torch.no_grad()
def perturb_norms(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms, so that a wrong eps or a misplaced BN shows."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(
                torch.empty_like(m.running_mean).uniform_(-0.2, 0.2, generator=gen)
            )
            m.running_var.copy_(torch.empty_like(m.running_var).uniform_(0.5, 2.0, generator=gen))
            m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(torch.empty_like(m.bias).uniform_(-0.2, 0.2, generator=gen))


@pytest.mark.parametrize(
    ("name", "overrides", "builder", "ordered"),
    GROUND_TRUTH,
    ids=[f"{n}{''.join(f'-{k}={v}' for k, v in o.items())}" for n, o, _, _ in GROUND_TRUTH],
)
def test_equals_the_ground_truth_model(
    name: str, overrides: dict[str, Any], builder: Callable[[], nn.Module], ordered: bool
) -> None:
    """Same state_dict keys and shapes, same layer arguments, same
    eval outputs after a strict load."""
    torch.manual_seed(0)
    truth = builder().eval()
    perturb_norms(truth)
    with torch.device("meta"):  # no init of weights the strict load below overwrites, all of them:
        model = api.build(SPECS / f"{name}.yaml", **overrides)
    model = model.to_empty(device="cpu").eval()
    assert {k for k, _ in model.named_buffers()} <= set(model.state_dict())  # nothing left unloaded
    theirs, ours = truth.state_dict(), model.state_dict()
    assert (list(ours) == list(theirs)) if ordered else (sorted(ours) == sorted(theirs))
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    model.load_state_dict(theirs, strict=True)
    for path, module in truth.named_modules():
        if list(module.parameters(recurse=False)) or list(module.buffers(recurse=False)):
            mine = model.get_submodule(path)
            assert (type(mine), mine.extra_repr()) == (type(module), module.extra_repr()), path
    x = torch.randn(2, *model.archc_graph.input_shape)
    with torch.no_grad():
        a, b = model(x), truth(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(b.abs().max().item(), 1.0))


# ---------------------------------------------------------------------------------------------
# the option-A ResNets (their ops: tests/ops/test_slicing.py)
# ---------------------------------------------------------------------------------------------


def test_exported_resnet20_runs_without_archc() -> None:
    """`archc export` writes the shortcut ops as plain torch code: same keys, same outputs."""
    model = api.build(SPECS / "resnet20.yaml").eval()
    namespace: dict[str, Any] = {}
    exec(
        compile(
            export_python(model.archc_graph, None, "specs/resnet20.yaml"),
            "resnet20_export.py",
            "exec",
        ),
        namespace,
    )
    standalone = namespace["Resnet20"]().eval()
    standalone.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(standalone(x), model(x))


def test_option_a_resnets_have_no_shortcut_weights() -> None:
    keys = api.build(SPECS / "resnet20.yaml").state_dict()
    assert not [k for k in keys if "shortcut" in k or "downsample" in k]


# ---------------------------------------------------------------------------------------------
# archc zoo
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_zoo_json_lists_every_spec_without_importing_torch() -> None:
    """One row per zoo name: each spec file, and each variant of a family spec (which takes the name
    over a stand-alone file of the same stem); torchvision's published figures beside its models.
    The command runs in a fresh interpreter, which it leaves without torch, torchvision or numpy."""
    code = (
        "import sys, io, contextlib\nfrom archc.cli import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['zoo', '--format', 'json'])\nassert rc == 0, rc\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'numpy'))\nassert not heavy, heavy\nprint(out.getvalue())\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == zoo.names()
    assert set(NAMES) <= set(zoo.names())
    published = zoo.published()
    for row in rows:
        graph = api.compile_graph(row["name"])
        assert row["file"] == Path(api.load(row["name"]).path).name
        assert (row["params"], row["macs"]) == (graph.total_params, graph.total_macs)
        assert tuple(row["input"]) == graph.input_shape
        if row["name"] in published:
            assert row["torchvision"] == {
                k: published[row["name"]][k] for k in ("num_params", "gmacs")
            }
            assert row["params"] == row["torchvision"]["num_params"]
        else:
            assert row["torchvision"] is None
            assert row["params"] == EXPECTED_PARAMS[row["name"]]
            assert tuple(row["output"]) == OUTPUT_SHAPES[row["name"]]


@functools.cache
def zoo_collection() -> tuple[list[Any], list[SpecError]]:
    """The zoo command's compile of every name, once, for the tests that only read it
    (test_zoo_json_lists_every_spec_without_importing_torch runs the command and checks it)."""
    return collect(default_specs_dir())


def test_zoo_table_has_a_row_per_spec(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import archc.commands.zoo

    def shared(specs_dir: Path) -> tuple[list[Any], list[SpecError]]:
        assert specs_dir == default_specs_dir()
        return zoo_collection()

    monkeypatch.setattr(archc.commands.zoo, "collect", shared)
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["name", "input", "params", "MACs"]
    assert [line.split()[0] for line in lines[1:]] == zoo.names()
    row = lines[1 + zoo.names().index("resnet18")]
    assert "resnet18            3x224x224   11,689,512  1.81G   11,689,512     1.814" in row


def test_docs_zoo_md_is_the_commands_output() -> None:
    entries, errors = zoo_collection()
    assert not errors
    assert (REPO / "docs" / "zoo.md").read_text() == render_markdown(entries), (
        "regenerate with: archc zoo --format markdown > docs/zoo.md"
    )


def test_zoo_reports_a_broken_spec_and_lists_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.yaml").write_text(
        "# A one-layer net.\ninput: [3, 8, 8]\nlayers:\n  - {conv: {out: 4, kernel: 3}}\n"
    )
    (tmp_path / "bad.yaml").write_text(
        "input: [3, 8, 8]\nlayers:\n  - {conv: {out: 4, kernel: 9}}\n"
    )
    assert main(["zoo", "--specs-dir", str(tmp_path), "--format", "json"]) == 1
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [(r["name"], r["params"], r["macs"], r["description"]) for r in rows] == [
        ("good", 112, 3 * 4 * 9 * 36, "A one-layer net.")
    ]
    assert "bad.yaml:3" in out.err and "does not fit" in out.err


def test_zoo_without_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "--specs-dir", str(tmp_path / "nowhere")]) == 1
    assert "no specs directory" in capsys.readouterr().err
    assert main(["zoo", "--specs-dir", str(tmp_path)]) == 1
    assert "no *.yaml specs" in capsys.readouterr().err


def test_zoo_helpers() -> None:
    assert default_specs_dir().resolve() == SPECS  # archc/specs, the package data, links to specs/
    assert [si(n) for n in (999, 417_000, 12_078_448, 1_814_073_344, 125_485_696)] == [
        "999",
        "417K",
        "12.1M",
        "1.81G",
        "125M",
    ]
    assert header_line("\n# first line\n# second\nname: x\n") == "first line"
    assert header_line("name: x\n# late comment\n") == ""


def test_models_load_by_name_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "resnet152", "squeezenet1_1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["params"]) for r in rows] == [
        ("resnet152", 60_192_808),
        ("squeezenet1_1", 1_235_496),
    ]
    assert main(["check", "resnt152"]) == 1
    assert (
        "no spec file or zoo model named 'resnt152' (did you mean 'resnet152'?)"
        in capsys.readouterr().err
    )


def test_a_variant_setting_an_undeclared_parameter_is_a_positioned_error(
    write_spec: Callable[..., Path],
) -> None:
    path = write_spec("""
        input: [3, 8, 8]
        params: {width: 4}
        variants:
          small: {widht: 2}
        layers:
          - conv: {out: $width, kernel: 3}
        """)
    with pytest.raises(
        SpecError, match="variant sets unknown parameter 'widht' \\(did you mean 'width'\\?\\)"
    ) as err:
        api.load(path)
    assert (err.value.line, err.value.col) == (4, 11)


@pytest.mark.slow
def test_the_wheel_ships_the_zoo(tmp_path: Path) -> None:
    """A non-editable install has the specs and torchvision's figures as package data."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("archc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"archc/specs/{p.name}" for p in SPEC_FILES} <= names
    assert "archc/data/torchvision_published.json" in names


def test_the_published_figures_are_torchvision_s() -> None:
    classifiers = torchvision.models.list_models(module=torchvision.models)
    assert sorted(zoo.published()) == sorted(classifiers) and len(classifiers) == 80
    for name, figures in zoo.published().items():
        weights = next(iter(torchvision.models.get_model_weights(name)))
        assert figures == {
            "num_params": weights.meta["num_params"],
            "gmacs": weights.meta["_ops"],
            "weights": str(weights),
        }
