"""Tests for archc.compiler.expr, the safe ``${...}`` expression evaluator."""

from __future__ import annotations

import contextlib
import operator
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.compiler.expr import MAX_EXPR_CHARS, MAX_INT, ExprError, evaluate, names_in, render

ENV: dict[str, object] = {
    "planes": 64,
    "ratio": 4,
    "i": 2,
    "width": 0.5,
    "name": "conv",
    "flag": True,
    "sizes": [3, 1, 2],
    "nothing": None,
}


def err(text: str, env: dict[str, object] | None = None) -> ExprError:
    with pytest.raises(ExprError) as info:
        evaluate(text, ENV if env is None else env)
    return info.value


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("planes * 4", 256),
        ("64 // ratio", 16),
        ("planes // ratio * 2", 32),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 - 10", -3),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("-7 % 3", 2),
        ("7.5 % 2", 1.5),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("4 ** 0.5", 2.0),
        ("-planes", -64),
        ("+ratio", 4),
        ("--3", 3),
        ("True + 1", 2),
        ("planes * width", 32.0),
        ("1_000 + 1", 1001),
        ("1e3", 1000.0),
        ("10 ** 18", MAX_INT),
        ("'a' + 'b'", "ab"),
        ("name + '_1'", "conv_1"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("(1, 2)", [1, 2]),
        ("[planes, ratio]", [64, 4]),
        ("[]", []),
        ("sizes", [3, 1, 2]),
    ],
)
def test_arithmetic(text: str, expected: object) -> None:
    result = evaluate(text, ENV)
    assert result == expected
    assert type(result) is type(expected)


def test_true_division_is_float_and_floor_division_of_ints_is_int() -> None:
    assert evaluate("4 / 2", ENV) == 2.0
    assert isinstance(evaluate("4 / 2", ENV), float)
    assert isinstance(evaluate("9 // 2", ENV), int)


@pytest.mark.parametrize(
    "text", ["1 / 0", "1 // 0", "1 % 0", "1.0 / 0", "planes % (ratio - 4)", "0 ** -1"]
)
def test_division_by_zero(text: str) -> None:
    assert "division by zero" in err(text).message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("2 ** 10 ** 10", "exponent too large"),
        ("2 ** 65", "exponent too large"),
        ("1 ** -100", "exponent too large"),
        ("2 ** 64", "too large"),
        ("1000000 ** 4", "too large"),
        ("10 ** 18 + 1", "too large"),
        ("10 ** 18 * 10", "too large"),
        ("-(10 ** 18) - 1", "too large"),
        ("10000000000000000000", "too large"),
        ("ceil(1e300)", "too large"),
        ("int(1e19)", "too large"),
        ("round(1e300)", "too large"),
        ("1e308 * 10", "overflow"),
        ("1e308 + 1e308", "overflow"),
        ("1e10 ** 64", "overflow"),
        ("1e400", "overflow"),
        ("float('inf')", "overflow"),
        ("float('nan')", "not finite"),
        ("(-8) ** 0.5", "complex"),
        ("1j", "complex"),
    ],
)
def test_numeric_limits(text: str, needle: str) -> None:
    assert needle in err(text).message


def test_huge_power_is_rejected_quickly() -> None:
    # 2**10**10 would need gigabytes; the guard must reject it before computing.
    for text in ["2 ** 10 ** 10", "9 ** 9 ** 9", "(10 ** 18) ** 64", "(-7) ** 64"]:
        with pytest.raises(ExprError):
            evaluate(text, {})


def test_power_bound_is_exact() -> None:
    assert evaluate("2 ** 59", {}) == 2**59
    assert evaluate("(-10) ** 17", {}) == (-10) ** 17
    assert evaluate("999999 ** 3", {}) == 999999**3
    assert "too large" in err("2 ** 60").message  # 2**60 > 10**18
    assert "too large" in err("1000001 ** 3").message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("'ab' * 3", "multiplied"),
        ("3 * 'ab'", "multiplied"),
        ("[1] * 3", "multiplied"),
        ("sizes * 2", "multiplied"),
        ("'%d' % 3", "%"),
        ("'a' - 'b'", "-"),
        ("'a' + 1", "+"),
        ("[1] + 'a'", "+"),
        ("nothing + 1", "null"),
        ("-name", "unary -"),
        ("1 < 'a'", "cannot compare"),
    ],
)
def test_type_errors(text: str, needle: str) -> None:
    assert needle in err(text).message


def test_string_and_list_growth_is_bounded() -> None:
    env: dict[str, object] = {"s": "x" * 6000, "items": [0] * 6000}
    assert "too long" in err("s + s", env).message
    assert "too long" in err("items + items", env).message
    assert evaluate("s + 'y'", env) == "x" * 6000 + "y"


# --------------------------------------------------------------------------- logic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 if true else 2", 1),
        ("1 if false else 2", 2),
        ("'big' if planes > 32 else 'small'", "big"),
        ("planes if flag else undefined_name", 64),  # untaken branch is not evaluated
        ("1 if 0 else 2 if 1 else 3", 2),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("3 > 2 >= 2", True),
        ("planes == 64", True),
        ("planes != 64", False),
        ("ratio <= 4", True),
        ("'a' < 'b'", True),
        ("[1, 2] == [1, 2]", True),
        ("nothing == null", True),
        ("true and false", False),
        ("true and 7", 7),
        ("0 or 5", 5),
        ("null or 'x'", "x"),
        ("false and undefined_name", False),  # short-circuit
        ("true or undefined_name", True),
        ("not 0", True),
        ("not flag", False),
        ("not (planes > 3 and ratio < 2)", True),
        ("True", True),
        ("False", False),
        ("None", None),
        ("null", None),
    ],
)
def test_logic(text: str, expected: object) -> None:
    result = evaluate(text, ENV)
    assert result == expected
    assert type(result) is type(expected)


# --------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("min(planes, 32)", 32),
        ("max(1, 2, planes)", 64),
        ("min(sizes)", 1),
        ("max([1.5, 2])", 2),
        ("max(8, planes // 16)", 8),
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("int(3.9)", 3),
        ("int('12')", 12),
        ("int(true)", 1),
        ("float(2)", 2.0),
        ("float('1.5')", 1.5),
        ("round(2.6)", 3),
        ("round(3.14159, 2)", 3.14),
        ("round(1234, -2)", 1200),
        ("bool(0)", False),
        ("bool('x')", True),
        ("len(sizes)", 3),
        ("len([])", 0),
        ("len(name)", 4),
        ("ceil(planes * 0.3)", 20),
        ("floor(2.7)", 2),
        ("floor(-2.5)", -3),
        ("sqrt(16)", 4.0),
        ("clamp(5, 1, 3)", 3),
        ("clamp(-5, 1, 3)", 1),
        ("clamp(2, 1, 3)", 2),
        ("int(planes * width)", 32),
    ],
)
def test_functions(text: str, expected: object) -> None:
    result = evaluate(text, ENV)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("min()", "min() takes"),
        ("abs(1, 2)", "abs() takes"),
        ("clamp(1, 2)", "clamp() takes"),
        ("min([])", "empty"),
        ("min(3)", "needs a list"),
        ("min(1, 'a')", "cannot compare"),
        ("len(3)", "len()"),
        ("sqrt(-1)", "negative"),
        ("clamp(1, 3, 2)", "lower bound"),
        ("int('abc')", "cannot parse"),
        ("int('9' * 3)", "multiplied"),
        ("float('x')", "cannot parse"),
        ("round(1.5, 1000)", "ndigits"),
        ("round(5, -10 ** 18)", "ndigits"),
        ("abs('a')", "needs a number"),
    ],
)
def test_function_errors(text: str, needle: str) -> None:
    assert needle in err(text).message


# --------------------------------------------------------------------------- rejection


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("x.__class__", "attribute"),
        ("name.upper()", "attribute"),
        ("(1).real", "attribute"),
        ("lambda: 1", "lambda"),
        ("(lambda: 1)()", "lambda"),
        ("[i for i in sizes]", "comprehension"),
        ("(i for i in sizes)", "comprehension"),
        ("{i for i in sizes}", "comprehension"),
        ("{i: i for i in sizes}", "comprehension"),
        ("f'{planes}'", "f-string"),
        ("(y := 1)", "walrus"),
        ("max(*sizes)", "starred"),
        ("[*sizes]", "starred"),
        ("round(2.5, ndigits=1)", "keyword"),
        ("max(**{})", "keyword"),
        ("open('/etc/passwd')", "'open'"),
        ("print(1)", "'print'"),
        ("getattr(planes, 'x')", "'getattr'"),
        ("__import__('os')", "dunder"),
        ("__builtins__", "dunder"),
        ("__name__", "dunder"),
        ("{'a': 1}", "dict"),
        ("{1, 2}", "set"),
        ("1 << 3", "'<<'"),
        ("6 ^ 3", "'^'"),
        ("6 & 3", "'&'"),
        ("6 | 3", "'|'"),
        ("~6", "'~'"),
        ("1 in sizes", "'in'"),
        ("planes is 64", "'is'"),
        ("b'x'", "bytes"),
        ("...", "Ellipsis"),
        ("await planes", "await"),
        ("(yield)", "yield"),
    ],
)
def test_rejected_constructs(text: str, needle: str) -> None:
    assert needle in err(text).message


def test_rejection_happens_even_in_untaken_branches() -> None:
    assert "attribute" in err("1 if true else planes.__class__").message


# --------------------------------------------------------------------------- parse guards


def test_too_long() -> None:
    assert "too long" in err("1" + " + 1" * MAX_EXPR_CHARS).message
    assert "too long" in err("x" * (MAX_EXPR_CHARS + 1)).message


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "1" + ")" * 5000,
        "(" * 300 + "1" + ")" * 300,
        "[" * 300 + "]" * 300,
        "-" * 900 + "1",
        "not " * 240 + "1",
        "1" + " + 1" * 240,
        "2 ** " * 300 + "1",
    ],
)
def test_deep_nesting_is_an_expr_error(text: str) -> None:
    err(text)  # and not RecursionError / MemoryError


@pytest.mark.parametrize(
    "text", ["1 + * 2", "planes +", "(1", "'abc", "\x00", "", "   ", "a b", "1; 2"]
)
def test_syntax_errors_have_offsets(text: str) -> None:
    e = err(text)
    assert isinstance(e.offset, int)
    assert 0 <= e.offset <= len(text)


def test_syntax_error_offset_points_into_text() -> None:
    assert err("1 + * 2").offset == 4
    assert err("  1 + * 2").offset == 6  # leading whitespace is accounted for


def test_leading_and_trailing_whitespace_and_newlines() -> None:
    assert evaluate("  planes * 2  ", ENV) == 128
    assert evaluate("(planes\n + 1)", ENV) == 65


def test_non_string_expression() -> None:
    with pytest.raises(ExprError):
        evaluate(3, ENV)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- names


def test_undefined_name_with_suggestion() -> None:
    e = err("plane * 2")
    assert "undefined name 'plane'" in e.message
    assert "did you mean 'planes'?" in e.message
    assert e.offset == 0
    assert err("1 + rati").offset == 4


def test_undefined_name_without_suggestion() -> None:
    e = err("zzzzzz")
    assert "undefined name 'zzzzzz'" in e.message
    assert "did you mean" not in e.message


def test_constant_names_win_over_env() -> None:
    assert evaluate("true", {"true": 5}) is True


def test_env_tuples_become_lists() -> None:
    assert evaluate("shape", {"shape": (1, 2)}) == [1, 2]
    assert evaluate("shape + [3]", {"shape": (1, 2)}) == [1, 2, 3]


def test_names_in() -> None:
    assert names_in("a + b if c else min(d, true, null)") == {"a", "b", "c", "d"}
    assert names_in("1 + 2") == set()
    assert names_in("planes // ratio") == {"planes", "ratio"}
    with pytest.raises(ExprError):
        names_in("a.b")


def test_cache_does_not_capture_env() -> None:
    assert evaluate("planes * 2", {"planes": 1}) == 2
    assert evaluate("planes * 2", {"planes": 5}) == 10


def test_error_attributes_and_pickle() -> None:
    e = err("1 + rati")
    assert e.message.startswith("undefined name")
    assert e.text == "1 + rati"
    assert "column 4" in str(e)
    clone = pickle.loads(pickle.dumps(e))
    assert (clone.message, clone.offset, clone.text) == (e.message, e.offset, e.text)


# --------------------------------------------------------------------------- render


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${planes * 4}", 256),
        ("  ${planes * 4}  ", 256),
        ("${width}", 0.5),
        ("${flag}", True),
        ("${name}", "conv"),
        ("${nothing}", None),
        ("${sizes}", [3, 1, 2]),
        ("$planes", 64),
        (" $planes ", 64),
        ("$flag", True),
        ("layer${i + 1}", "layer3"),
        ("${name}_${i}", "conv_2"),
        ("${planes}x${planes}", "64x64"),
        ("use_${flag}", "use_true"),
        ("${i} ${i}", "2 2"),
        ("x=${width * 2}", "x=1.0"),
        ("$$5", "$5"),
        ("$${planes}", "${planes}"),
        ("$$planes", "$planes"),
        ("cost: $$${i}", "cost: $2"),
        ("a $ b", "a $ b"),
        ("price $5", "price $5"),
        ("trailing $", "trailing $"),
        ("no dollars", "no dollars"),
        ("${'}'}", "}"),
        ("${max([1, 2])}", 2),
        ("", ""),
    ],
)
def test_render_strings(value: str, expected: object) -> None:
    result = render(value, ENV)
    assert result == expected
    assert type(result) is type(expected)


def test_render_nested_containers() -> None:
    spec = {
        "layers": [
            {"out": "${planes * 2}", "name": "block${i}", "k": 3},
            ["$ratio", "${64 // ratio}", 1.5, None, True],
        ],
        "scale": "$width",
    }
    out = render(spec, ENV)
    assert out == {
        "layers": [
            {"out": 128, "name": "block2", "k": 3},
            [4, 16, 1.5, None, True],
        ],
        "scale": 0.5,
    }
    assert out is not spec
    assert out["layers"] is not spec["layers"]
    assert spec["layers"][0]["out"] == "${planes * 2}"  # input untouched


@pytest.mark.parametrize("value", [3, 2.5, None, True, (1, "${i}")])
def test_render_other_values_unchanged(value: object) -> None:
    assert render(value, ENV) is value


@pytest.mark.parametrize("value", ["${planes", "x ${", "${}", "${nope}", "$nope", "a${x.y}b"])
def test_render_errors(value: str) -> None:
    with pytest.raises(ExprError):
        render(value, ENV)


# --------------------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_random_text_only_raises_expr_error(text: str) -> None:
    with contextlib.suppress(ExprError):
        evaluate(text, ENV)


_EXPR_ALPHABET = "0123456789+-*/%() .,<>=!'\"[]{}:_aefilnorstxy$\\"


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=_EXPR_ALPHABET, max_size=60))
def test_random_expression_like_text_only_raises_expr_error(text: str) -> None:
    env = {**ENV, "x": 3, "y": -2.5, "s": "ab", "l": [1, 2]}
    with contextlib.suppress(ExprError):
        evaluate(text, env)
    with contextlib.suppress(ExprError):
        render(text, env)


_INT_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "%": operator.mod,
}


def _int_trees() -> st.SearchStrategy[object]:
    leaves = st.integers(min_value=-30, max_value=30)
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.tuples(st.sampled_from(sorted(_INT_OPS)), kids, kids),
            st.tuples(st.just("neg"), kids),
            st.tuples(st.just("**"), kids, st.integers(min_value=0, max_value=4)),
        ),
        max_leaves=12,
    )


def _to_text(tree: object) -> str:
    if isinstance(tree, int):
        return f"({tree})" if tree < 0 else str(tree)
    assert isinstance(tree, tuple)
    if tree[0] == "neg":
        return f"(-{_to_text(tree[1])})"
    op, left, right = tree
    return f"({_to_text(left)} {op} {_to_text(right)})"


def _expected(tree: object) -> int:
    """Reference semantics via the operator module; raises like ExprError would."""
    if isinstance(tree, int):
        return tree
    assert isinstance(tree, tuple)
    if tree[0] == "neg":
        value = operator.neg(_expected(tree[1]))
    elif tree[0] == "**":
        value = operator.pow(_expected(tree[1]), tree[2])
    else:
        value = _INT_OPS[tree[0]](_expected(tree[1]), _expected(tree[2]))
    if abs(value) > MAX_INT:
        raise OverflowError
    return value


@settings(max_examples=500, deadline=None)
@given(_int_trees())
def test_int_arithmetic_matches_python(tree: object) -> None:
    text = _to_text(tree)
    try:
        expected = _expected(tree)
    except (ZeroDivisionError, OverflowError):
        with pytest.raises(ExprError):
            evaluate(text, {})
        return
    result = evaluate(text, {})
    assert result == expected
    assert type(result) is int


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${sizes[0]}", 1),
        ("${sizes[-1]}", 3),
        ("${sizes[i]}", 2),
        ("${sizes[:i]}", [1]),
        ("${sum(sizes[:i + 1])}", 3),
        ("${sizes[::-1]}", [3, 2, 1]),
        ("${stages[1]['planes'] * 2}", 256),
        ("${len(stages)}", 2),
        ("${name[0]}", "r"),
    ],
)
def test_indexing_lists_and_mappings(text: str, expected: object) -> None:
    env = {"sizes": [1, 2, 3], "i": 1, "name": "res", "stages": [{"planes": 64}, {"planes": 128}]}
    assert render(text, env) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("${sizes[3]}", "index 3 is out of range for a list of length 3"),
        ("${sizes[1.0]}", "a list index must be an integer, got 'float'"),
        ("${sizes['a']}", "a list index must be an integer, got 'str'"),
        ("${stages[0]['width']}", "key 'width' is not in the mapping (keys: 'planes')"),
        ("${stages[0][0]}", "a mapping is indexed by a key name, got 'int'"),
        ("${i[0]}", "'int' cannot be indexed"),
        ("${sizes[::0]}", "slice step cannot be zero"),
        ("${sizes[:'a']}", "slice bounds must be integers"),
        ("${sum(name)}", "sum() needs a list of numbers"),
    ],
)
def test_indexing_errors(text: str, needle: str) -> None:
    env = {"sizes": [1, 2, 3], "i": 1, "name": "res", "stages": [{"planes": 64}]}
    with pytest.raises(ExprError) as info:
        render(text, env)
    assert needle in info.value.message
