"""The emitted nn.Module agrees with the static analysis, for every spec of this suite and the zoo.

For each spec: every node's inferred shape is its runtime shape (train and eval mode), parameter
and buffer counts match per module and in total, forward works in both modes, and the generated
code's in-place ops and `del`s change nothing: a reference build without them gives the same
outputs and gradients.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from archc import api
from archc.compiler.codegen import literal, module_source
from archc.compiler.emit import CompiledModel, build_module, count_tensors, probe_shapes
from archc.compiler.ir import Graph
from tests.conftest import TEST_SPECS, compile_and_verify, lang_specs, spec_id, spec_size

HEAVY_MACS = 10**8
HEAVY_PARAMS = 2 * 10**7


def _light(paths: list[Path]) -> list[object]:
    """Specs under ~0.1 GMACs and 20M parameters; the big zoo models are checked in test_zoo."""
    out = []
    for path in paths:
        macs, params = spec_size(path)
        if macs <= HEAVY_MACS and params <= HEAVY_PARAMS:
            out.append(pytest.param(path, id=spec_id(path)))
    return out


ALL_SPECS = _light(lang_specs())
LANG = sorted(TEST_SPECS.glob("lang_*.yaml"))


@pytest.mark.parametrize("path", ALL_SPECS)
def test_static_shapes_params_and_buffers_equal_runtime(path: Path) -> None:
    model = compile_and_verify(path)
    assert model.archc_graph.total_params == api.compile_graph(path).total_params


def _reference(spec: Path | str, monkeypatch: pytest.MonkeyPatch) -> CompiledModel:
    """The same spec built with every in-place optimisation disabled."""
    with monkeypatch.context() as m:
        m.setattr(Graph, "inplace_nodes", property(lambda graph: frozenset()))
        return api.build(spec)


def _outputs_and_grads(
    model: nn.Module, x: torch.Tensor, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    out = model(x)
    outs = list(out) if isinstance(out, tuple) else [out]
    loss = sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
    loss.backward()
    grads = [x.grad] + [
        p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()
    ]
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("path", [pytest.param(p, id=spec_id(p)) for p in LANG])
def test_inplace_ops_change_neither_outputs_nor_gradients(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = api.build(path)
    reference = _reference(path, monkeypatch)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(3, *model.archc_graph.input_shape)
    for training in (True, False):
        model.train(training)
        reference.train(training)
        out, grads = _outputs_and_grads(model, x, seed=1)
        ref_out, ref_grads = _outputs_and_grads(reference, x, seed=1)
        for a, b in zip([*out, *grads], [*ref_out, *ref_grads], strict=True):
            torch.testing.assert_close(a, b)
        model.zero_grad()
        reference.zero_grad()
    for key, value in reference.state_dict().items():  # same BN running statistics afterwards
        torch.testing.assert_close(model.state_dict()[key], value)


def test_inplace_is_used_where_safe_and_only_there() -> None:
    graph = api.compile_graph(TEST_SPECS / "lang_resnet.yaml")
    safe = graph.inplace_nodes
    assert "layer1.0.relu" in safe and "layer1.0.relu~2" in safe and "layer2.0.add" in safe
    assert "relu" in safe  # after bn1
    model = api.build(TEST_SPECS / "lang_resnet.yaml")
    assert model.relu.inplace and model.get_submodule("layer1.0.relu").inplace


def test_inplace_never_touches_the_input_or_a_tensor_read_twice(write_spec) -> None:
    path = write_spec("""
        input: [4, 6, 6]
        layers:
          - {relu: , name: r0}
          - {conv: {out: 4, kernel: 1}, name: c1}
          - {relu: , name: r1}
          - {conv: {out: 4, kernel: 1}, name: c2}
          - {relu: , name: r2, from: c2}
          - {add: , from: [c2, r2], name: sum}
          - {relu: , name: r3}
          - {add: , from: [c1, c1], name: twice}
    """)
    graph = api.compile_graph(path)
    safe = graph.inplace_nodes
    assert "r0" not in safe  # reads the caller's tensor
    assert "r1" not in safe and "twice" not in safe  # c1 is read by r1 and (twice) by twice
    assert "r2" not in safe and "sum" not in safe  # c2 is read by r2 and sum
    assert "r3" in safe  # the sum is fresh and read once
    model = compile_and_verify(path)
    assert (
        not model.r0.inplace and not model.r1.inplace and not model.r2.inplace and model.r3.inplace
    )
    x = torch.randn(2, 4, 6, 6)
    before = x.clone()
    model(x)
    assert torch.equal(x, before)


def test_generated_forward_is_straight_line() -> None:
    model = api.build(TEST_SPECS / "lang_resnet.yaml")
    code = model.code
    assert code == module_source(
        model.archc_graph,
        api.load(TEST_SPECS / "lang_resnet.yaml").model.init,
        str(TEST_SPECS / "lang_resnet.yaml"),
    )
    assert not any(word in code for word in (" for x", "while ", "lambda", "m_layer"))
    forwards = code.split("def forward(self, x):")[1:]
    assert forwards and all(
        body.split("\n\n")[0].strip().splitlines()[-1].strip().startswith("return ")
        for body in forwards
    )
    assert (
        "add = bn2.add_(downsample)" in code and "if self.downsample is not None else x" in code
    )  # torchvision-style
    assert any(line.strip().startswith("del ") for line in code.splitlines())


def test_probe_shapes_records_every_node() -> None:
    model = api.build(TEST_SPECS / "lang_unet.yaml")
    shapes = probe_shapes(model, torch.zeros(1, 1, 16, 16))
    assert shapes == {n.id: n.shape for n in model.archc_graph}


def test_count_tensors_counts_shared_modules_once() -> None:
    model = api.build(TEST_SPECS / "lang_resnet.yaml")
    params, buffers = count_tensors(model)
    graph = model.archc_graph
    assert params == graph.total_params and buffers == graph.total_buffers
    assert graph.total_params == sum(n.params for n in graph if not n.shared)


def test_compiled_model_structure() -> None:
    model = api.build(TEST_SPECS / "lang_inception.yaml")
    assert isinstance(model, CompiledModel) and type(model).__name__ == "LangInception"
    inc = model.get_submodule("inc")
    assert type(inc).__name__ == "Inception" and isinstance(
        model.get_submodule("inc.branch2"), nn.Sequential
    )
    x = torch.zeros(1, 16, 12, 12)
    assert inc(x).shape[1:] == model.archc_graph.shape_of("inc.concat")
    # two builds are independent modules of distinct classes with equal structure
    other = api.build(TEST_SPECS / "lang_inception.yaml")
    assert type(other) is not type(model) and list(other.state_dict()) == list(model.state_dict())


def test_state_dict_round_trip_between_builds() -> None:
    torch.manual_seed(0)
    a = api.build(TEST_SPECS / "lang_densenet.yaml").eval()
    b = api.build(TEST_SPECS / "lang_densenet.yaml").eval()
    x = torch.randn(2, 3, 8, 8)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))


def test_deepcopy_and_device_moves_keep_working() -> None:
    import copy

    model = api.build(TEST_SPECS / "lang_aux.yaml")
    clone = copy.deepcopy(model).eval()
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(clone(x), model(x))
    half = copy.deepcopy(model).to(torch.float64)
    assert half(x.double()).dtype == torch.float64


def test_generated_code_holds_only_plain_data() -> None:
    assert (
        literal((1, 2)) == "(1, 2)"
        and literal((3,)) == "(3,)"
        and literal(float("inf")) == "float('inf')"
    )
    for value in (object(), print, {1: 2}, nn.ReLU()):
        with pytest.raises(ValueError, match="not plain data"):
            literal(value)


def test_build_module_without_init_keeps_torch_defaults() -> None:
    graph = api.compile_graph(TEST_SPECS / "lang_init.yaml")
    torch.manual_seed(0)
    model = build_module(graph, None)
    assert model.conv.bias.unique().numel() == 32 and model.bn.weight.eq(1).all()


@pytest.mark.parametrize("name", ["torch", "record", "m_layer1", "x", "self", "m_"])
def test_node_names_never_shadow_generated_code(name: str, write_spec) -> None:
    """Nodes named like the globals and locals of the generated forward
    still work (torch.cat, probes)."""
    path = write_spec(f"""
        input: [3, 8, 8]
        layers:
          - {{conv: {{out: 4, kernel: 1}}, name: {name}}}
          - {{concat: , from: [{name}, input]}}
          - seq: [relu, {{conv: {{out: 2, kernel: 1}}}}]
            name: layer1
    """)
    model = compile_and_verify(path)
    assert model.archc_graph.shape_of(model.archc_graph.output) == (2, 8, 8)
