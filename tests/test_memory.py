"""The training-memory model against hand counts and against the
measured peak of real CPU train steps.

The measurement is the peak of torch's CPU allocator (the profiler's memory events: every tensor
allocated and freed during a steady-state SGD or Adam step, plus the tensors alive before it), which
is what the static estimate models: the same quantity as CUDA's max_memory_allocated, without the
noise RSS carries (allocator caches, oneDNN scratchpads, library pages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from archc.analysis.memory import buffer_bytes, replay_step, training_memory
from archc.api import compile_graph
from tests.conftest import REPO, TEST_SPECS

TOLERANCE = (
    0.10  # the issue asks for 15%; the model is within 3% on every case below (docs/report.md)
)


def measure_step_peak(spec: Path | str, batch: int, optimizer: str, **build_args: Any) -> int:
    """Peak bytes held by torch's CPU allocator during one steady-state train step.

    A first step allocates the optimizer state; gradients are then set to None as archc's trainer
    does. The profiler sees only allocations made while it runs, so the tensors already alive
    (parameters, buffers, optimizer state, the batch) are added to its peak.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    from archc.api import build

    torch.manual_seed(0)
    model = build(spec, **build_args).train()
    graph = model.archc_graph
    x = torch.randn(batch, *graph.input_shape)
    y = torch.randint(0, graph.shape_of(graph.output)[0], (batch,))
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    weights = [1.0] + [h.loss_weight for h in graph.heads]

    def step() -> None:
        out = model(x)
        outs = out if isinstance(out, tuple) else (out,)
        loss = sum(
            w * torch.nn.functional.cross_entropy(o, y) for w, o in zip(weights, outs, strict=True)
        )
        loss.backward()
        opt.step()

    step()
    opt.zero_grad(set_to_none=True)
    tensors = [*model.parameters(), *model.buffers(), x, y]
    tensors += [
        t for state in opt.state.values() for t in state.values() if isinstance(t, torch.Tensor)
    ]
    alive = sum(t.numel() * t.element_size() for t in tensors)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return alive + peak


SMALL_SWIN = {"embed_dim": 32, "num_heads": [1, 2, 4], "depths": [2, 2, 2], "num_classes": 10}
CASES = [
    pytest.param(
        REPO / "specs/resnet20.yaml", 32, {}, id="resnet20-cifar"
    ),  # option-A shortcut: views and pads
    pytest.param(
        REPO / "specs/se_resnet20.yaml", 16, {}, id="se_resnet20-cifar"
    ),  # SE gates: multiply keeps both
    pytest.param(
        REPO / "specs/mobilenet_v2.yaml", 4, {"image_size": 64}, id="mobilenet_v2-64px"
    ),  # ReLU6 clones
    pytest.param(
        TEST_SPECS / "report_googlenet.yaml",
        2,
        {"aux": True, "input_shape": (3, 96, 96)},
        id="googlenet-aux-96px",
    ),
    pytest.param(
        REPO / "specs/maxvit.yaml",
        4,
        {
            "image_size": 64,
            "partition_size": 2,
            "stem_channels": 16,
            "block_channels": [16, 32, 48, 64],
            "block_layers": [1, 2, 1, 1],
            "head_dim": 8,
        },
        id="maxvit-small-64px",
    ),  # relative attention
    pytest.param(
        REPO / "specs/swin.yaml", 4, SMALL_SWIN | {"image_size": 112}, id="swin-small-112px"
    ),  # shifted windows, tiling each stage's map
    pytest.param(
        REPO / "specs/swin_v2.yaml", 4, SMALL_SWIN | {"image_size": 128}, id="swin_v2-small-128px"
    ),
    pytest.param(
        TEST_SPECS / "diagram_densenet.yaml",
        4,
        {"input_shape": (3, 64, 64)},
        id="densenet121-64px",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        TEST_SPECS / "report_resnet18.yaml", 8, {}, id="resnet18-224px", marks=pytest.mark.slow
    ),
    pytest.param(
        TEST_SPECS / "report_alexnet.yaml", 8, {}, id="alexnet-224px", marks=pytest.mark.slow
    ),
    pytest.param(
        TEST_SPECS / "report_resnet50.yaml", 4, {}, id="resnet50-224px", marks=pytest.mark.slow
    ),
]


# Adam on the small and mid-sized cases only: its optimizer state is one per-parameter rule, which
# those cases check; the 224 px ImageNet models, MaxViT and Swin take SGD (Adam doubles their time).
SGD_ONLY = {
    "resnet50-224px",
    "resnet18-224px",
    "alexnet-224px",
    "maxvit-small-64px",
    "swin-small-112px",
    "swin_v2-small-128px",
}
STEPS = [
    pytest.param(*case.values, optimizer, id=f"{optimizer}-{case.id}", marks=case.marks)
    for case in CASES
    for optimizer in ("sgd", "adam")
    if optimizer == "sgd" or case.id not in SGD_ONLY
]


@pytest.mark.parametrize(("spec", "batch", "build_args", "optimizer"), STEPS)
def test_estimate_matches_a_measured_cpu_train_step(
    spec: Path, batch: int, build_args: dict[str, Any], optimizer: str
) -> None:
    if not spec.exists():
        pytest.skip(f"zoo spec {spec.relative_to(REPO)} is not written yet")
    measured = measure_step_peak(spec, batch, optimizer, **build_args)
    estimate = training_memory(compile_graph(spec, **build_args), batch).peak[optimizer]
    assert abs(estimate - measured) <= TOLERANCE * measured, (
        f"estimate {estimate / 1e6:.1f} MB vs measured "
        f"{measured / 1e6:.1f} MB ({100 * (estimate / measured - 1):+.1f}%)"
    )


HAND = """
name: hand
input: [2, 4, 4]
layers:
  - {conv: {out: 4, kernel: 3, padding: 1, bias: false}, name: conv}
  - {bn: , name: bn}
  - {relu: , name: relu}
  - {flatten: , name: flat}
  - {linear: 3, name: fc}
"""


def test_saved_activations_by_hand(write_spec) -> None:
    """conv keeps the input, bn keeps the conv output, the in-place relu keeps bn's output, which
    the linear layer also keeps through the flatten view: three tensors plus bn's two statistics."""
    graph = compile_graph(write_spec(HAND))
    peak, saved, forward, input_bytes, grads, _ = replay_step(graph, batch=1, dtype="float32")
    assert input_bytes == 2 * 16 * 4
    assert saved == input_bytes + 4 * 16 * 4 + 4 * 16 * 4 + 2 * 4 * 4
    assert (
        forward == 4 * 16 * 4 + 4 * 16 * 4 + 3 * 4
    )  # conv, bn, fc; relu is in place and flatten a view
    assert grads == (4 * 2 * 9 + 2 * 4 + 64 * 3 + 3) * 4
    assert peak >= saved


def test_components_and_optimizer_state(write_spec) -> None:
    graph = compile_graph(TEST_SPECS / "report_resnet18.yaml")
    mem = training_memory(graph, batch=2)
    assert mem.params == mem.grads == 11_689_512 * 4
    assert mem.optimizer_state == {"sgd": mem.params, "adam": 2 * mem.params}
    assert mem.buffers == buffer_bytes(graph, "float32") == (9_620 - 20) * 4 + 20 * 8
    assert (
        mem.peak["adam"] - mem.peak["sgd"] == mem.params
    )  # activation-bound: Adam adds its second moment
    assert (
        mem.peak["sgd"]
        >= mem.params + mem.buffers + mem.optimizer_state["sgd"] + mem.saved_activations
    )


def test_batch_and_dtype_scale_activations_not_weights() -> None:
    graph = compile_graph(TEST_SPECS / "report_resnet18.yaml")
    one, four = training_memory(graph, 1), training_memory(graph, 4)
    assert four.params == one.params and four.forward_activations == 4 * one.forward_activations
    half = training_memory(graph, 4, "bfloat16")
    assert (
        half.params * 2 == four.params and half.forward_activations * 2 == four.forward_activations
    )
    assert half.saved_activations * 2 > four.saved_activations  # int64 pool indices do not shrink


def test_parameter_heavy_adam_peaks_in_the_optimizer_step() -> None:
    """AlexNet at batch 1: every gradient, both moments and the for-loop step's two temporaries of
    the largest weight (the 9216x4096 fc) outweigh the activations."""
    graph = compile_graph(TEST_SPECS / "report_alexnet.yaml")
    mem = training_memory(graph, 1)
    assert mem.phase["adam"] == "step"
    assert (
        mem.peak["adam"]
        == mem.params + mem.grads + 2 * mem.params + 2 * 9216 * 4096 * 4 + mem.input
    )
    foreach = training_memory(graph, 1, foreach=True)
    assert foreach.peak["adam"] == mem.params + mem.grads + 2 * mem.params + mem.params + mem.input


def test_bad_batch_and_dtype_are_value_errors() -> None:
    graph = compile_graph(TEST_SPECS / "report_alexnet.yaml")
    with pytest.raises(ValueError, match="batch"):
        training_memory(graph, 0)
    with pytest.raises(ValueError, match="dtype"):
        training_memory(graph, 1, "int8")
