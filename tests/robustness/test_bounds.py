"""Round two of the hostile specs: work that slipped past every cap, and tracebacks that must be
positioned errors. Each class has its reproducer and variants; every case must end in a SpecError
with a line and column (the time and memory each takes are the fuzz campaign's business, see
test_fuzz.py's budget cases)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from archc import api
from archc.compiler import expr
from archc.ops.pool import _pool_out, _sees_only_padding
from tests.robustness.conftest import assert_positioned, spec_error

HEAD = "name: t\ninput: [3, 8, 8]\nlayers:\n"


def listing(name: str, n: int = 300) -> str:
    return '"${[' + ", ".join([name] * n) + ']}"'


def nested_lists(levels: int = 4, tail: str = '  - {relu: , name: "x${d}"}\n') -> str:
    """a = 300 ints, b = [a x300], c = [b x300], ...: each level
    multiplies the nested size by 300."""
    names = "abcdef"
    params = "  a: [" + ", ".join(["1"] * 300) + "]\n"
    params += "".join(f"  {names[i]}: {listing(names[i - 1])}\n" for i in range(1, levels))
    return "name: t\ninput: [1, 8]\nparams:\n" + params + "layers:\n" + tail


# -------------------------------------------------------------------- values built by expressions

BIG_VALUES = {
    "interpolated": nested_lists(),
    "compared": nested_lists(tail='  - {relu: , when: "${d == d}"}\n'),
    "compared_repeatedly": nested_lists(
        2, '  - seq: [{relu: , when: "${b == b2}"}]\n    repeat: 4096\n'
    ).replace("layers:", "  b2: " + listing("a") + "\nlayers:"),
    "compared_copies": nested_lists(tail='  - {relu: , when: "${[c] == [c]}"}\n'),
    "as_argument": nested_lists(3, "  - linear: $c\n"),
    "list_of_refs": "name: t\ninput: [1, 8]\nparams:\n  a: ["
    + ", ".join(["1"] * 300)
    + "]\n  b: "
    + listing("a")
    + "\n  e: ["
    + ", ".join(["$b"] * 300)
    + ']\nlayers:\n  - {relu: , when: "${e == e}"}\n',
    "concatenated": "name: t\ninput: [1, 8]\nparams:\n  a: ["
    + ", ".join(["1"] * 300)
    + "]\n  b: "
    + listing("a")
    + '\n  c: "${b + b + b + b}"\nlayers:\n  - relu\n',
    "many_interpolations": 'name: t\ninput: [1, 8]\nparams:\n  s: "'
    + "x" * 9000
    + '"\nlayers:\n  - {relu: , name: "'
    + "${s}" * 2000
    + '"}\n',
}


@pytest.mark.parametrize("text", BIG_VALUES.values(), ids=BIG_VALUES.keys())
def test_values_that_grow_by_nesting_are_refused_before_rendering_or_comparing(text: str) -> None:
    exc = spec_error(api.compile_graph, text)
    assert_positioned(exc, text)
    assert (
        "too large" in exc.message or "too long" in exc.message or "too much work" in exc.message
    ), exc.render()


def test_value_size_counts_nested_contents_and_stops_early() -> None:
    a = [1] * 300
    assert expr.values.value_size(a) == 301
    assert expr.values.value_size([a, a]) == 603  # a shared list counts every time it appears
    assert (
        expr.values.value_size([[a] * 300] * 300, limit=1000) < 2000
    )  # early exit: not 27 M steps
    assert expr.evaluate("[a, a]", {"a": a}) == [a, a]
    with pytest.raises(expr.ExprError, match="value too large"):
        expr.evaluate("[a, a, a, a]", {"a": [a] * 100})


def test_expression_work_is_budgeted_as_a_whole() -> None:
    env = {"p": list(range(5000)), "q": list(range(5000))}
    with expr.work_budget(100_000), pytest.raises(expr.ExprError, match="too much work"):
        for _ in range(100):
            expr.evaluate("p == q", env)
    for _ in range(100):  # outside a budget nothing is counted
        expr.evaluate("p == q", env)


# -------------------------------------------------------------------- expansion work without nodes

WORK = {
    "empty_seqs": HEAD + "  - seq: [{seq: [{seq: [], repeat: 4096}], repeat: 4096}]\n  - relu\n",
    "empty_seqs_3": HEAD
    + "  - seq: [{seq: [{seq: [{seq: []}], repeat: 4096}], repeat: 4096}]\n  - relu\n",
    "when_false_inline": HEAD
    + "  - seq: [{seq: [{relu: , when: false}], repeat: 4096}]\n    repeat: 4096\n",
    "when_expression": HEAD
    + "  - seq: [{seq: [{relu: , when: '${i < 0}'}], repeat: 4096}]\n    repeat: 4096\n",
}
WORK["when_false_blocks"] = (
    "name: t\ninput: [3, 8, 8]\nblocks:\n  b1:\n    layers:\n"
    "      - {relu: , when: false}\n  b2:\n    layers:\n      - {b1: , repeat: 4096}\n"
    "  b3:\n    layers:\n      - {b2: , repeat: 4096}\nlayers:\n  - {b3: , repeat: 4096}\n"
)


@pytest.mark.parametrize("text", WORK.values(), ids=WORK.keys())
def test_expansion_work_is_budgeted_even_when_it_makes_no_node(text: str) -> None:
    """Each form is refused once it has spent the budget: 600 visits at --max-nodes 100, the
    same check as the default's 120,000 (below), which takes a third of a CPU-second to spend."""
    exc = spec_error(api.compile_graph, text, limits=api.Limits(max_nodes=100))
    assert_positioned(exc, text)
    assert "visits more than 600 items and lists" in exc.message, exc.render()


def test_the_default_work_budget_is_six_visits_per_node_of_the_node_cap() -> None:
    text = WORK["empty_seqs"]  # 4096 x 4096 empty repeats
    exc = spec_error(api.compile_graph, text)
    assert_positioned(exc, text)
    assert "visits more than 120,000 items and lists" in exc.message, exc.render()


def test_the_work_budget_follows_max_nodes() -> None:
    text = HEAD + "  - seq: [{seq: [], repeat: 20}]\n    repeat: 20\n  - relu\n"  # ~860 visits
    exc = spec_error(api.compile_graph, text, limits=api.Limits(max_nodes=100))
    assert exc.line == 4 and "visits more than 600 items" in exc.message, exc.render()
    assert len(api.compile_graph(text, limits=api.Limits(max_nodes=200)).nodes) == 1


# -------------------------------------------------------------------- names and generated paths


LONG = "a" * 200_000
LONG_NAMES = {
    "seq": HEAD + f"  - seq: [{{relu: , repeat: 4096}}]\n    name: {LONG}\n",
    "layer": HEAD + f"  - {{relu: , name: {LONG}}}\n",
    "expression": "name: t\nparams:\n  s: "
    + "a" * 9000
    + "\ninput: [3, 8, 8]\nlayers:\n  - {relu: , name: '${s}'}\n",
}


@pytest.mark.parametrize("text", LONG_NAMES.values(), ids=LONG_NAMES.keys())
def test_long_names_are_refused(text: str) -> None:
    exc = spec_error(api.compile_graph, text)
    assert_positioned(exc, text)
    assert "characters long; the limit is 128" in exc.message, exc.render()


def test_generated_paths_are_bounded_in_total() -> None:
    """45 nested seqs of 128-character names: each of the 4,000
    relus has a ~5,800-character path."""
    body = "{relu: , repeat: 4000}"
    for _ in range(45):
        body = f"{{seq: [{body}], name: {'n' * 128}}}"
    exc = spec_error(api.compile_graph, HEAD + f"  - {body}\n")
    assert "generated layer names add up to more than 16,000,000 characters" in exc.message, (
        exc.render()
    )


def test_repeated_names_stay_linear() -> None:
    text = HEAD + (
        "  - {relu: , name: r, repeat: 4096}\n"
        "  - {seq: [{relu: , name: r, repeat: 4096}], repeat: 4}\n"
    )
    exc = spec_error(api.compile_graph, text)
    assert "more than 20,000 nodes" in exc.message


# -------------------------------------------------------------------- shape rules are O(1)


def test_dilated_pooling_over_a_huge_feature_map_is_instant() -> None:
    graph = api.compile_graph(
        "name: t\ninput: [1, 1000000000]\nlayers:\n"
        "  - maxpool: {kernel: 2, stride: 1, dilation: 2}\n"
    )
    assert graph.nodes[graph.output].shape == (1, 1000000000 - 2)
    exc = spec_error(api.compile_graph, "name: t\ninput: [1, 3, 1000000000]\nlayers:\n"
                     "  - maxpool: {kernel: 2, stride: 1, dilation: [4, 2], "
                     "padding: [1, 0]}\n")  # fmt: skip
    assert "see only padding" in exc.message


def test_the_padding_rule_equals_visiting_every_window() -> None:
    for size in range(1, 14):
        for k in range(1, 6):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for d in range(2, 6):
                        for ceil in (False, True):
                            out = _pool_out(size, k, s, p, d, ceil)
                            if out < 1:
                                continue
                            brute = any(
                                not any(0 <= i * s - p + j * d < size for j in range(k))
                                for i in range(out)
                            )
                            assert _sees_only_padding(size, k, s, p, d, out) == brute, (
                                size,
                                k,
                                s,
                                p,
                                d,
                                out,
                            )


# -------------------------------------------------------------------- tracebacks that became errors

POSITIONED = {
    "upsample_inf": (HEAD + "  - upsample: .inf\n", "finite"),
    "upsample_nan": (HEAD + "  - upsample: .nan\n", "finite"),
    "upsample_huge": (HEAD + "  - upsample: 1.0e300\n", "too large"),
    "leaky_relu_nan": (HEAD + "  - leaky_relu: .nan\n", "finite"),
    "lrn_alpha_inf": (HEAD + "  - lrn: {size: 2, alpha: .inf}\n", "finite"),
    "pad_channels_nan": (HEAD + "  - pad_channels: {after: 8, value: .nan}\n", "finite"),
    "bn_eps_inf": (HEAD + "  - bn: {eps: .inf}\n", "finite"),
    "dropout_nan": (HEAD + "  - dropout: .nan\n", "finite"),
    "expression_nan": (HEAD + "  - leaky_relu: \"${float('nan')}\"\n", "not finite"),
    "input_4000_digits": (
        "name: t\ninput: [1, " + "9" * 4000 + "]\nlayers:\n  - relu\n",
        "number literal",
    ),
    "input_5000_digits": (
        "name: t\ninput: [1, " + "9" * 5000 + "]\nlayers:\n  - relu\n",
        "number literal",
    ),
    "input_10_400": (
        "name: t\ninput: [1, " + str(10**400) + "]\nlayers:\n  - relu\n",
        "number literal",
    ),
    "input_2_60": ("name: t\ninput: [1, " + str(2**60) + "]\nlayers:\n  - relu\n", "at most 2^40"),
    "input_expr_huge": ('name: t\ninput: [1, "${10**18}"]\nlayers:\n  - relu\n', "at most 2^40"),
    "linear_huge": (
        "name: t\ninput: [1, 8]\nlayers:\n  - linear: 1000000000000000000\n",
        "too large",
    ),
    "hex_literal": (HEAD + "  - linear: 0x" + "f" * 200 + "\n", "number literal"),
    "float_literal": (HEAD + "  - dropout: 0." + "1" * 300 + "\n", "number literal"),
    "init_norm_kaiming": (
        HEAD + "  - conv: {out: 4, kernel: 3}\ninit:\n  norm: kaiming_normal\n",
        "fan-in",
    ),
    "init_norm_xavier": (
        HEAD + "  - conv: {out: 4, kernel: 3}\ninit:\n  norm: {scheme: xavier_uniform}\n",
        "fan-in",
    ),
    "init_uniform_reversed": (
        HEAD
        + "  - conv: {out: 4, kernel: 3}\ninit:\n  conv: {scheme: uniform, low: 1.0, high: 0.0}\n",
        "low < high",
    ),
    "init_std_nan": (
        HEAD + "  - conv: {out: 4, kernel: 3}\ninit:\n  conv: {scheme: normal, std: .nan}\n",
        "finite",
    ),
}


@pytest.mark.parametrize(("text", "words"), POSITIONED.values(), ids=POSITIONED.keys())
def test_former_tracebacks_are_positioned_errors(text: str, words: str) -> None:
    for stage in (api.compile_graph, api.build):
        exc = spec_error(stage, text)
        assert_positioned(exc, text)
        assert words in exc.message.lower() or words in str(exc).lower(), exc.render()


@pytest.mark.parametrize("name", ["_forward_train", "_forward_eval"])
def test_generated_method_names_are_refused_as_layer_names(name: str) -> None:
    text = (
        f"name: t\ninput: [3, 8, 8]\nlayers:\n  - {{conv: {{out: 4, kernel: 3}}, name: "
        f"{name}}}\n  - {{flatten: , name: f}}\n  - {{linear: 2, name: aux, from: f, "
        f"head: {{train_only: true, loss_weight: 0.3}}}}\n  - {{linear: 3, from: f}}\n"
    )
    exc = spec_error(api.build, text)
    assert exc.line == 4 and name in exc.message, exc.render()


def test_no_float_field_of_any_op_accepts_a_non_finite_value() -> None:
    from archc import ops

    for op in ops.canonical().values():
        model = op.Args
        for field_name, info in model.model_fields.items():
            if info.annotation in (float, float | None):
                with pytest.raises(Exception, match="finite"):
                    model.model_validate({field_name: math.inf})


def test_memory_guard_of_an_absurd_model_is_an_error_not_an_overflow() -> None:
    exc = spec_error(
        api.build, "name: t\ninput: [1, 1099511627776]\nlayers:\n  - linear: 1099511627776\n"
    )
    assert exc.line == 4


def test_archive_sizes_are_checked_from_the_zip_directory(tmp_path: Path) -> None:
    import torch

    from archc.weights import WeightsError, check_archive_sizes

    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(100_000)}, path)
    check_archive_sizes(path, available=10**9)
    with pytest.raises(
        WeightsError, match=r"declares 0\.0 GB of data, more than half of the 0\.0 GB"
    ):
        check_archive_sizes(path, available=100_000)
