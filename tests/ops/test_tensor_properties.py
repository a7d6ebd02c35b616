"""Property test of the tensor ops (archc/ops/tensor.py, flatten): random chains of permute,
transpose, reshape, flatten, unflatten, slice, select, roll, mean, pad and channel_shuffle on random
shapes compile to modules whose runtime shapes equal the static ones (forward and backward, train
and eval) and whose output equals the same chain applied with torch."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import compile_and_verify

Shape = tuple[int, ...]
Step = tuple[
    str, Callable[[torch.Tensor], torch.Tensor], Shape
]  # spec item, torch code, output shape


@st.composite
def step(draw: st.DrawFn, shape: Shape) -> Step:
    rank = len(shape)
    kinds = ["permute", "transpose", "reshape", "flatten", "slice", "roll", "mean"]
    if rank >= 2:
        kinds += ["select", "pad", "channel_shuffle"]
    if any(s > 1 and any(s % f == 0 for f in range(2, s)) for s in shape):
        kinds.append("unflatten")
    kind = draw(st.sampled_from(kinds))
    if kind == "permute":
        dims = draw(st.permutations(range(rank)))
        return (
            f"permute: {list(dims)}",
            lambda x: x.permute(0, *(d + 1 for d in dims)),
            tuple(shape[d] for d in dims),
        )
    if kind == "transpose":
        a, b = draw(st.integers(-rank, rank - 1)), draw(st.integers(-rank, rank - 1))
        out = list(shape)
        out[a], out[b] = shape[b], shape[a]
        return (
            f"transpose: {{dim0: {a}, dim1: {b}}}",
            lambda x: x.transpose(a % rank + 1, b % rank + 1),
            tuple(out),
        )
    if kind == "reshape":
        total = math.prod(shape)
        first = draw(st.sampled_from([d for d in range(1, total + 1) if total % d == 0]))
        return (
            f"reshape: [{first}, -1]",
            lambda x: x.reshape(len(x), first, -1),
            (first, total // first),
        )
    if kind == "flatten":
        start = draw(st.integers(0, rank - 1))
        end = draw(st.integers(start, rank - 1))
        out = (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
        return (
            f"flatten: {{start: {start}, end: {end}}}",
            lambda x: x.flatten(start + 1, end + 1),
            out,
        )
    if kind == "unflatten":
        d = draw(
            st.sampled_from(
                [i for i, s in enumerate(shape) if s > 1 and any(s % f == 0 for f in range(2, s))]
            )
        )
        f = draw(st.sampled_from([f for f in range(2, shape[d]) if shape[d] % f == 0]))
        out = (*shape[:d], f, shape[d] // f, *shape[d + 1 :])
        return (
            f"unflatten: {{dim: {d}, sizes: [{f}, -1]}}",
            lambda x: x.unflatten(d + 1, (f, -1)),
            out,
        )
    if kind == "slice":
        d = draw(st.integers(0, rank - 1))
        start = draw(st.integers(0, shape[d] - 1))
        step_ = draw(st.integers(1, 3))
        size = len(range(start, shape[d], step_))
        return (
            f"slice: {{dim: {d}, start: {start}, step: {step_}}}",
            lambda x: x[(slice(None),) * (d + 1) + (slice(start, None, step_),)],
            (*shape[:d], size, *shape[d + 1 :]),
        )
    if kind == "select":
        d = draw(st.integers(0, rank - 1))
        i = draw(st.integers(-shape[d], shape[d] - 1))
        return (
            f"select: {{dim: {d}, index: {i}}}",
            lambda x: x.select(d + 1, i),
            shape[:d] + shape[d + 1 :],
        )
    if kind == "roll":
        d, s = draw(st.integers(-rank, rank - 1)), draw(st.integers(-5, 5))
        return (
            f"roll: {{shifts: {s}, dims: {d}}}",
            lambda x: torch.roll(x, s, d if d < 0 else d + 1),
            shape,
        )
    if kind == "mean":
        d = draw(st.integers(0, rank - 1))
        keep = rank == 1 or draw(st.booleans())
        out = (
            tuple(1 if i == d else s for i, s in enumerate(shape))
            if keep
            else shape[:d] + shape[d + 1 :]
        )
        return (
            f"mean: {{dim: {d}, keepdim: {str(keep).lower()}}}",
            lambda x: x.mean(d + 1, keepdim=keep),
            out,
        )
    if kind == "pad":
        p = draw(st.integers(0, 2))
        return (
            f"pad: {p}",
            lambda x: F.pad(x, (p,) * (2 * (x.dim() - 2))),
            (shape[0], *(s + 2 * p for s in shape[1:])),
        )
    g = draw(st.sampled_from([g for g in range(1, shape[0] + 1) if shape[0] % g == 0]))
    return f"channel_shuffle: {g}", lambda x: F.channel_shuffle(x, g), shape


@st.composite
def chains(draw: st.DrawFn) -> tuple[Shape, list[Step]]:
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    steps, cur = [], shape
    for _ in range(draw(st.integers(1, 4))):
        item = draw(step(cur))
        steps.append(item)
        cur = item[2]
        if not cur:
            break  # a scalar per sample: nothing left to index
    return shape, steps


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(chains())
def test_tensor_op_chains_match_static_shapes_and_torch(chain: tuple[Shape, list[Step]]) -> None:
    shape, steps = chain
    text = f"input: {list(shape)}\nlayers:\n" + "".join(f"  - {item}\n" for item, _, _ in steps)
    model = compile_and_verify(text)
    graph = model.archc_graph
    assert graph.shape_of(graph.output) == steps[-1][2]
    x = torch.randn(2, *shape)
    want = x
    for _, code, _ in steps:
        want = code(want)
    assert torch.equal(model(x), want)
