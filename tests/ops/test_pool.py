"""Ops of archc/ops/pool.py: window, adaptive and global pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archc import api
from archc.errors import SpecError
from tests.ops.conftest import Reference, check_op

CASES: list[tuple[str, list[int], Reference]] = [
    (
        "maxpool: {kernel: 3, stride: 2, ceil_mode: true}",
        [3, 8, 8],
        lambda m, x: F.max_pool2d(x, 3, 2, ceil_mode=True),
    ),
    (
        "maxpool: {kernel: 3, stride: 1, padding: 1, dilation: 2}",
        [3, 8, 8],
        lambda m, x: F.max_pool2d(x, 3, 1, 1, 2),
    ),
    (
        "avgpool: {kernel: 3, stride: 2, padding: 1, count_include_pad: false}",
        [3, 7, 7],
        lambda m, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    ),
    ("avgpool: 2", [3, 9], lambda m, x: F.avg_pool1d(x, 2)),
    ("adaptive_avgpool: 3", [3, 7, 7], lambda m, x: F.adaptive_avg_pool2d(x, 3)),
    ("adaptive_maxpool: [2, 3]", [3, 7, 7], lambda m, x: F.adaptive_max_pool2d(x, (2, 3))),
    ("global_avgpool", [3, 5, 6], lambda m, x: F.adaptive_avg_pool2d(x, 1)),
    ("global_maxpool", [3, 5, 6], lambda m, x: F.adaptive_max_pool2d(x, 1)),
]


@pytest.mark.parametrize(("layer", "shape", "reference"), CASES, ids=[c[0] for c in CASES])
def test_pool_computes_the_torch_pooling(
    layer: str, shape: list[int], reference: Reference
) -> None:
    check_op(layer, shape, reference)


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        ("avgpool", [1, 1, 3, 3]),  # 3-d: T=1 under a 2-long window, ceil_mode would give 1
        ("avgpool", [1, 2, 2, 3]),
        ("avgpool", [1, 1, 3]),  # 2-d: PyTorch pools a 1-high map with ceil_mode
        ("avgpool", [1, 1]),  # 1-d
        ("maxpool", [1, 1, 3, 3]),
        ("maxpool", [1, 1, 3]),
    ],
)
def test_a_window_larger_than_the_map_compiles_exactly_when_torch_runs_it(
    op: str, shape: list[int]
) -> None:
    """Found by the mutation campaign: 3-d average pooling refuses a dimension shorter than the
    kernel where the size rule alone (ceil_mode) would give an output; archc agrees with torch."""
    text = f"input: {shape}\nlayers:\n  - {{{op}: {{kernel: 2, ceil_mode: true}}}}\n"
    pool = getattr(torch.nn, f"{'Avg' if op == 'avgpool' else 'Max'}Pool{len(shape) - 1}d")
    try:
        expected = tuple(pool(2, ceil_mode=True)(torch.zeros(1, *shape)).shape[1:])
    except RuntimeError:
        expected = None
    try:
        graph = api.compile_graph(text)
        got = graph.shape_of(graph.output)
    except SpecError as error:
        assert expected is None, f"archc refused what torch runs: {error}"
        assert ":3:" in str(error) and "does not fit" in str(error)
    else:
        assert expected is not None and tuple(got) == expected
