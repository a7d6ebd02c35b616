"""Ops of archc/ops/merge.py: add, concat (along any dim) and multiply (broadcasting)."""

from __future__ import annotations

import re

import pytest
import torch

from archc import api
from archc.errors import SpecError


def build(inputs: str, shape: list[int]) -> torch.nn.Module:
    return api.build(
        f"input: {shape}\nlayers:\n  - {{conv: {{out: 4, kernel: 1}}, name: a}}\n"
        f"  - {{conv: {{out: 4, kernel: 1}}, name: b, from: input}}\n  - {inputs}\n"
    )


@pytest.mark.parametrize(
    ("item", "combine"),
    [
        ("{add: , from: [a, b]}", lambda a, b: a + b),
        ("{concat: , from: [a, b]}", lambda a, b: torch.cat([a, b], 1)),
        ("{concat: {dim: -1}, from: [a, b]}", lambda a, b: torch.cat([a, b], -1)),
        ("{multiply: , from: [a, b]}", lambda a, b: a * b),
    ],
)
def test_merge_combines_its_inputs(item: str, combine) -> None:
    model = build(item, [3, 5, 5]).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        a, b = model.a(x), model.b(x)
        out = model(x)
    assert torch.equal(out, combine(a, b))
    assert model.archc_graph.shape_of(model.archc_graph.output) == tuple(out.shape[1:])


def test_multiply_broadcasts_a_gate() -> None:
    model = api.build("input: [4, 5, 5]\nlayers:\n  - multiply: [[], [global_avgpool, sigmoid]]\n")
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(model(x), x * torch.sigmoid(x.mean((2, 3), keepdim=True)))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{add: , from: [a, input]}", "add: 'input' yields 3x5x5 but 'a' yields 4x5x5"),
        ("{concat: {dim: 2}, from: [a, input]}", "concat: 'input' yields 3x5 but 'a' yields 4x5"),
        ("{concat: {dim: 3}, from: [a, b]}", "dim=3 is out of range for a 4x5x5 input"),
    ],
)
def test_merge_errors_name_the_inputs(item: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        build(item, [3, 5, 5])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_the_branch_form_takes_the_reference_form_s_arguments(dim: int) -> None:
    """`concat: {dim: d, branches: [...]}` is `{concat: {dim: d}, from: [...]}`:
    same graph, same code."""
    head = "input: [4, 6, 6]\nlayers:\n"
    branches = api.build(
        head
        + (
            f"  - concat: {{dim: {dim}, branches: [[], "
            f"[{{conv: {{out: 4, kernel: 1}}, name: c}}]]}}\n"
        )
    )
    refs = api.build(
        head + "  - {conv: {out: 4, kernel: 1}, name: c}\n"
        f"  - {{concat: {{dim: {dim}}}, from: [input, c]}}\n"
    )
    assert branches.archc_graph.nodes["concat"].shape == refs.archc_graph.nodes["concat"].shape
    refs.load_state_dict(branches.state_dict())
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(branches(x), refs(x)) and torch.equal(
        branches(x), torch.cat([x, branches.c(x)], dim + 1 if dim >= 0 else dim)
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "{add: {dim: 1}, from: [a, b]}",
            "add takes no 'dim': it sums equally shaped inputs element by element; to sum over "
            "a dimension write 'sum: {dim: ...}'",
        ),
        ("{add: {dim: 1, branches: [[], []]}}", "add takes no 'dim'"),
        (
            "{multiply: {dim: 0}, from: [a, b]}",
            "multiply takes no 'dim': it multiplies element by element, broadcasting",
        ),
        (
            "{concat: [[], []], dim: 1}",
            "concat takes 'dim': write it inside concat's mapping beside the branches, "
            "'concat: {dim: ..., branches: [...]}'",
        ),
        ("{concat: {dim: 1, branches: []}}", "'branches' is a list of branches"),
    ],
)
def test_a_dim_where_it_means_nothing_is_a_clear_error(item: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        build(item, [3, 5, 5])
    assert str(info.value).startswith("<string>:5:")  # the item's line (the fifth of the spec)
