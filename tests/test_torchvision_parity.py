"""The torchvision parity specs against torchvision: the recorded
reference JSON and the real models.

For each of the 14 models: parameter count, output shape, MACs (the JSON's FLOPs / 2) and every
state_dict key and shape in order are identical; torchvision's state_dict loads strictly and both
models give the same outputs in eval mode. That is what makes `--init-from torchvision.pth` work.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archc import api
from archc.compiler.emit import CompiledModel, build_module

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
# torchvision's parameter counts, FLOPs and state_dict keys/shapes, as handed to the project in
# ../shared/reference/; a copy lives here so that a clean clone tests against the same figures.
REFERENCE_FILE = REPO / "tests" / "data" / "torchvision_models.json"
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "torchvision_models.json"
REFERENCE = json.loads(REFERENCE_FILE.read_text())["models"]

# JSON entry -> (spec file, spec parameters that select it)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "alexnet": ("alexnet", {}),
    "vgg11": ("vgg11", {}),
    "vgg11_bn": ("vgg11_bn", {}),
    "vgg13": ("vgg13", {}),
    "vgg16": ("vgg16", {}),
    "vgg16_bn": ("vgg16_bn", {}),
    "vgg19": ("vgg19", {}),
    "vgg19_bn": ("vgg19_bn", {}),
    "googlenet": ("googlenet", {}),
    "googlenet_aux": ("googlenet", {"aux": True}),
    "inception_v3": ("inception_v3", {}),
    "resnet18": ("resnet18", {}),
    "resnet34": ("resnet34", {}),
    "resnet50": ("resnet50", {}),
    "resnet101": ("resnet101", {}),
}
# A real forward against torchvision for the smallest model of each family here: the deeper
# variants (VGG-13/16/19 with and without BN: ~140M parameters each; ResNet-101) are the same
# family code with more repeats, their keys and shapes checked against the reference above, and
# their spec files node for node their family's variants (test_torchvision_zoo).
DEEPER = {"vgg13", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet101"}
# ResNet-34 is ResNet-18's basic blocks with more repeats: forwarded in CI, not in the quick loop.
FORWARDED_IN_CI = {"resnet34"}


def torchvision_model(entry: dict[str, Any], **extra: Any) -> nn.Module:
    constructor = entry["torchvision_constructor"]
    assert constructor.startswith("torchvision.models.")
    return getattr(torchvision.models, constructor.rsplit(".", 1)[1])(**entry["kwargs"], **extra)


def compiled(spec: str, overrides: dict[str, Any], *, meta: bool = False) -> CompiledModel:
    """Our model, its tensors allocated but not initialised: every test that runs it first loads
    torchvision's state_dict strictly, which overwrites each one (initialising VGG-11's 133M
    parameters would cost more CPU than its forward). With `meta`: shapes only, no memory."""
    graph = api.compile_graph(SPECS / f"{spec}.yaml", **overrides)
    return on_meta(graph) if meta else uninitialised(graph)


def on_meta(graph: Any) -> CompiledModel:
    with torch.device("meta"):
        return build_module(graph, None)


def uninitialised(graph: Any) -> CompiledModel:
    """The module of `graph` with uninitialised tensors (memory allocated, not written)."""
    return on_meta(graph).to_empty(device="cpu")


@torch.no_grad()
def perturb_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so that a wrong eps or a
    swapped BN shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(
                torch.empty_like(m.running_mean).uniform_(-0.2, 0.2, generator=gen)
            )
            m.running_var.copy_(torch.empty_like(m.running_var).uniform_(0.5, 2.0, generator=gen))
            m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(torch.empty_like(m.bias).uniform_(-0.2, 0.2, generator=gen))
        if isinstance(m, nn.LayerNorm):  # LayerNorm2d too
            m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(torch.empty_like(m.bias).uniform_(-0.2, 0.2, generator=gen))
        scale = getattr(m, "layer_scale", None)
        if isinstance(scale, nn.Parameter):  # ConvNeXt's 1e-6 would hide its blocks' output
            scale.copy_(torch.empty_like(scale).uniform_(0.5, 1.0, generator=gen))


def assert_same_layers(ours: nn.Module, theirs: nn.Module) -> None:
    """Every torchvision layer that owns tensors exists in ours with the same class and arguments
    (a class torchvision defines itself, LayerNorm2d or CNBlock, is a generated class of its name,
    or of its name with a suffix where calls of one block differ in their forward: CNBlock_2)."""
    for name, module in theirs.named_modules():
        own = list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        )
        if not own or not name:  # the root's own tensors (ViT's class_token) are checked by key
            continue
        mine = ours.get_submodule(name)
        if type(module).__module__.startswith("torchvision."):
            assert re.fullmatch(rf"{type(module).__name__}(_\d+)?", type(mine).__name__), name
        else:
            assert type(mine) is type(module), name
        assert mine.extra_repr() == module.extra_repr(), name


def assert_close_outputs(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = b.abs().max().item()
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0))


@pytest.mark.parametrize("case", list(CASES))
def test_static_figures_match_the_reference(case: str) -> None:
    spec, overrides = CASES[case]
    entry = REFERENCE[case]
    graph = api.compile_graph(SPECS / f"{spec}.yaml", **overrides)
    assert list(graph.input_shape) == entry["input_shape"]
    assert list(graph.shape_of(graph.output)) == entry["output_shape"]
    assert graph.total_params == entry["num_params"] == entry["num_trainable"]
    assert 2 * graph.total_macs == entry["forward_flops_batch1"]


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_keys_and_shapes_match_the_reference(case: str) -> None:
    spec, overrides = CASES[case]
    model = compiled(spec, overrides, meta=True)  # shapes only: no memory, no init
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == REFERENCE[case]["state_dict"]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=[pytest.mark.slow] if case in FORWARDED_IN_CI else [])
        for case in CASES
        if case not in DEEPER
    ],
)
def test_loads_torchvision_weights_and_computes_the_same(case: str) -> None:
    spec, overrides = CASES[case]
    entry = REFERENCE[case]
    torch.manual_seed(0)
    theirs = torchvision_model(entry).eval()
    perturb_norms(theirs)
    ours = compiled(spec, overrides).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    x = torch.randn(1, *entry["input_shape"])
    with torch.no_grad():
        assert_close_outputs(ours(x), theirs(x))


@pytest.mark.parametrize(("spec", "case"), [("resnet18", "resnet18"), ("googlenet", "googlenet")])
def test_flop_counter_equals_static_macs(spec: str, case: str) -> None:
    entry = REFERENCE[case]
    model = api.build(SPECS / f"{spec}.yaml").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *entry["input_shape"]))
    assert (
        counter.get_total_flops()
        == 2 * model.archc_graph.total_macs
        == entry["forward_flops_batch1"]
    )


def test_googlenet_aux_heads_train_like_torchvision() -> None:
    """Training mode with aux=true: the same three outputs in torchvision's order (main, aux2, aux1;
    the spec declares aux1 first and orders the outputs with `order:`), dropout masks included."""
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(aux_logits=True, init_weights=True).train()
    ours = compiled("googlenet", {"aux": True}).train()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert [(h.name, h.loss_weight, h.train_only) for h in ours.archc_heads] == [
        ("aux2", 0.3, True),
        ("aux1", 0.3, True),
    ]
    x = torch.randn(2, 3, 224, 224)
    torch.manual_seed(1)
    main, aux2, aux1 = ours(x)
    torch.manual_seed(1)
    ref = theirs(x)
    for a, b in ((main, ref.logits), (aux1, ref.aux_logits1), (aux2, ref.aux_logits2)):
        assert_close_outputs(a, b)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        out = ours(x)
        assert isinstance(out, torch.Tensor)  # eval mode: the main output only, heads not computed
        assert_close_outputs(out, theirs(x))


def test_inception_v3_aux_head_matches_torchvision() -> None:
    """aux=true is torchvision's aux_logits=True: same keys in the
    same order, same train outputs."""
    torch.manual_seed(0)
    theirs = torchvision.models.inception_v3(aux_logits=True, init_weights=True).train()
    perturb_norms(theirs)
    ours = compiled("inception_v3", {"aux": True}).train()
    assert (
        ours.archc_graph.total_params == sum(p.numel() for p in theirs.parameters()) == 27_161_264
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    x = torch.randn(2, 3, 299, 299)
    torch.manual_seed(1)
    main, aux = ours(x)
    torch.manual_seed(1)
    ref = theirs(x)
    assert_close_outputs(main, ref.logits)
    assert_close_outputs(aux, ref.aux_logits)


def test_mobilenet_v2_matches_torchvision() -> None:
    """A parity spec beyond the JSON: inverted residuals with
    depthwise convs, same keys and outputs."""
    torch.manual_seed(0)
    theirs = torchvision.models.mobilenet_v2().eval()
    perturb_norms(theirs)
    ours = compiled("mobilenet_v2", {}).eval()
    assert ours.archc_graph.total_params == sum(p.numel() for p in theirs.parameters()) == 3_504_872
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_layers(ours, theirs)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            out = ours(x)
        assert_close_outputs(out, theirs(x))
    assert counter.get_total_flops() == 2 * ours.archc_graph.total_macs


def test_wide_resnet50_2_is_resnet50_with_width_128() -> None:
    """The resnet50 spec's `width` parameter is torchvision's
    width_per_group (keys and shapes on meta)."""
    with torch.device("meta"):
        theirs = torchvision.models.wide_resnet50_2()
    ours = compiled("resnet50", {"width": 128}, meta=True)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    assert (
        ours.archc_graph.total_params == sum(p.numel() for p in theirs.parameters()) == 68_883_240
    )


@pytest.mark.parametrize("case", ["resnet18", "vgg11_bn", "googlenet"])
def test_num_classes_changes_only_the_classifier(case: str) -> None:
    """Fine-tuning setup: --set num_classes=10 keeps every key, only
    the last layer's shapes change."""
    spec, overrides = CASES[case]
    base = compiled(spec, overrides, meta=True).state_dict()
    small = compiled(spec, {**overrides, "num_classes": 10}, meta=True).state_dict()
    assert list(base) == list(small)
    changed = [k for k in base if base[k].shape != small[k].shape]
    assert changed and all(k.endswith((".weight", ".bias")) for k in changed) and len(changed) == 2
    assert all(small[k].shape[0] == 10 for k in changed)


@pytest.mark.skipif(
    not SHARED_REFERENCE.is_file(), reason="no ../shared/reference beside this checkout"
)
def test_the_copied_reference_is_the_shared_one() -> None:
    assert REFERENCE_FILE.read_bytes() == SHARED_REFERENCE.read_bytes()
