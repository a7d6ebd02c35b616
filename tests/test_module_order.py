"""A block's `module_order`: its child modules declared (and in the state_dict) in another order
than they run, as torchvision's post-norm Swin V2 block declares norm1 before the attention it
follows; the computation is unchanged, bad names are positioned errors."""

from __future__ import annotations

import pytest
import torch

from archc import api
from archc.errors import SpecError

POST_NORM = """
input: [6]
blocks:
  Post:
    module_order: {order}
    layers:
      - {{linear: 6, name: fc}}
      - {{layernorm: , name: norm}}
      - {{relu: , name: act}}
      - {{linear: 6, name: out}}
layers:
  - {{Post: , name: block}}
  - {{Post: , name: block2}}
"""


def test_children_are_declared_in_the_blocks_order_and_run_in_theirs() -> None:
    plain = api.build(POST_NORM.format(order="[]"))
    ordered = api.build(POST_NORM.format(order="[norm, fc]"))
    assert [k for k in ordered.state_dict() if k.startswith("block.")] == [
        "block.norm.weight",
        "block.norm.bias",
        "block.fc.weight",
        "block.fc.bias",
        "block.out.weight",
        "block.out.bias",
    ]
    assert [n for n, _ in ordered.block.named_children()] == ["norm", "fc", "act", "out"]
    assert ordered.archc_graph.total_params == plain.archc_graph.total_params
    ordered.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(3, 6)
    torch.testing.assert_close(ordered(x), plain(x))
    # the flow is unchanged
    assert [n.id for n in ordered.archc_graph] == [n.id for n in plain.archc_graph]


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (
            "[norm, fcc]",
            "module_order: 'fcc' is not a child module of block 'Post' \\(did you mean 'fc'",
        ),
        ("[norm, norm]", "module_order: 'norm' is named twice"),
    ],
)
def test_a_bad_module_order_is_a_positioned_error(order: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        api.compile_graph(POST_NORM.format(order=order))
    assert ":5:" in str(info.value)


def test_an_inline_block_has_no_modules_to_order() -> None:
    spec = POST_NORM.format(order="[norm, fc]")
    spec = spec.replace("    module_order", "    inline: true\n    module_order")
    with pytest.raises(SpecError, match="block 'Post' is inline: it has no modules of its own"):
        api.compile_graph(spec)
