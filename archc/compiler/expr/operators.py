"""Operator and function tables: what each allowed operator and call does to plain values."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

from archc.compiler.expr.errors import Fail
from archc.compiler.expr.values import (
    MAX_INT,
    MAX_LIST,
    MAX_POW_EXP,
    MAX_STR,
    bounded,
    charge,
    is_num,
    num_result,
    require_nums,
    tname,
    value_size,
)


def _op_add(a: object, b: object) -> object:
    if is_num(a) and is_num(b):
        return num_result(a + b)  # type: ignore[operator]
    if isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STR:
            raise Fail(f"string result too long (limit is {MAX_STR} characters)")
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        if len(a) + len(b) > MAX_LIST:
            raise Fail(f"list result too long (limit is {MAX_LIST} elements)")
        return bounded(a + b)
    raise Fail(f"unsupported operand types for +: '{tname(a)}' and '{tname(b)}'")


def _op_sub(a: object, b: object) -> object:
    require_nums("-", a, b)
    return num_result(a - b)  # type: ignore[operator]


def _op_mul(a: object, b: object) -> object:
    if not (is_num(a) and is_num(b)):
        raise Fail(f"only numbers may be multiplied (got '{tname(a)}' * '{tname(b)}')")
    return num_result(a * b)  # type: ignore[operator]


def _op_div(a: object, b: object) -> object:
    require_nums("/", a, b)
    return num_result(a / b)  # type: ignore[operator]


def _op_floordiv(a: object, b: object) -> object:
    require_nums("//", a, b)
    return num_result(a // b)  # type: ignore[operator]


def _op_mod(a: object, b: object) -> object:
    # Numbers only: on strings '%' would be printf-style formatting.
    require_nums("%", a, b)
    return num_result(a % b)  # type: ignore[operator]


def _op_pow(a: object, b: object) -> object:
    require_nums("**", a, b)
    if abs(b) > MAX_POW_EXP:  # type: ignore[arg-type]
        raise Fail(f"exponent too large (limit is {MAX_POW_EXP} in absolute value)")
    # |a| >= 2**(bits-1), so an int result is at least 2**((bits-1)*b) and MAX_INT < 2**60.
    # Rejecting on this bound first keeps the exact computation below tiny (< 2**125).
    if isinstance(a, int) and isinstance(b, int) and b > 0 and (abs(a).bit_length() - 1) * b > 60:
        raise Fail(f"integer result too large (limit is {MAX_INT:.0e} in absolute value)")
    return num_result(a**b)  # type: ignore[operator]


BINOPS: dict[type[ast.operator], tuple[str, Callable[[object, object], object]]] = {
    ast.Add: ("+", _op_add),
    ast.Sub: ("-", _op_sub),
    ast.Mult: ("*", _op_mul),
    ast.Div: ("/", _op_div),
    ast.FloorDiv: ("//", _op_floordiv),
    ast.Mod: ("%", _op_mod),
    ast.Pow: ("**", _op_pow),
}
BAD_BINOPS: dict[type[ast.operator], str] = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
}

CMPOPS: dict[type[ast.cmpop], tuple[str, Callable[[object, object], object]]] = {
    ast.Eq: ("==", lambda a, b: a == b),
    ast.NotEq: ("!=", lambda a, b: a != b),
    ast.Lt: ("<", lambda a, b: a < b),  # type: ignore[operator]
    ast.LtE: ("<=", lambda a, b: a <= b),  # type: ignore[operator]
    ast.Gt: (">", lambda a, b: a > b),  # type: ignore[operator]
    ast.GtE: (">=", lambda a, b: a >= b),  # type: ignore[operator]
}
BAD_CMPOPS: dict[type[ast.cmpop], str] = {
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


def unary_neg(a: object) -> object:
    if not is_num(a):
        raise Fail(f"bad operand type for unary -: '{tname(a)}'")
    return num_result(-a)  # type: ignore[operator]


def unary_pos(a: object) -> object:
    if not is_num(a):
        raise Fail(f"bad operand type for unary +: '{tname(a)}'")
    return num_result(+a)  # type: ignore[operator]


# --------------------------------------------------------------------------- functions


def _need_num(fname: str, value: object) -> float | int:
    if not is_num(value):
        raise Fail(f"{fname}() needs a number, got '{tname(value)}'")
    return value  # type: ignore[return-value]


def _fn_minmax(pick: Callable[..., object], fname: str) -> Callable[..., object]:
    def impl(*args: object) -> object:
        items: object = args
        if len(args) == 1:
            items = args[0]
            if not isinstance(items, list):
                raise Fail(f"{fname}() with one argument needs a list, got '{tname(items)}'")
            if not items:
                raise Fail(f"{fname}() of an empty list")
        if isinstance(items, list):
            value_size(items)  # comparing the elements costs their size: charged to the budget
        try:
            return pick(items)
        except TypeError:
            raise Fail(f"{fname}() cannot compare these values") from None

    return impl


def _fn_abs(x: object) -> object:
    return num_result(abs(_need_num("abs", x)))


def _fn_int(x: object) -> object:
    if isinstance(x, str):
        if len(x.strip()) > 40:
            raise Fail("int() argument string too long")
        try:
            return num_result(int(x))
        except ValueError:
            raise Fail(f"int() cannot parse {x!r}") from None
    return num_result(int(_need_num("int", x)))


def _fn_float(x: object) -> object:
    if isinstance(x, str):
        if len(x.strip()) > 400:
            raise Fail("float() argument string too long")
        try:
            return num_result(float(x))
        except ValueError:
            raise Fail(f"float() cannot parse {x!r}") from None
    return num_result(float(_need_num("float", x)))


def _fn_round(x: object, ndigits: object = None) -> object:
    num = _need_num("round", x)
    if ndigits is None:
        return num_result(round(num))
    if not isinstance(ndigits, int):
        raise Fail(f"round() ndigits must be an int, got '{tname(ndigits)}'")
    if abs(ndigits) > MAX_POW_EXP:  # round(int, -n) computes 10**n
        raise Fail(f"round() ndigits too large (limit is {MAX_POW_EXP})")
    return num_result(round(num, ndigits))


def _fn_bool(x: object) -> object:
    return bool(x)


def _fn_len(x: object) -> object:
    if not isinstance(x, (list, str)):
        raise Fail(f"len() needs a list or string, got '{tname(x)}'")
    return len(x)


def _fn_ceil(x: object) -> object:
    return num_result(math.ceil(_need_num("ceil", x)))


def _fn_floor(x: object) -> object:
    return num_result(math.floor(_need_num("floor", x)))


def _fn_sqrt(x: object) -> object:
    num = _need_num("sqrt", x)
    if num < 0:
        raise Fail("sqrt() of a negative number")
    return num_result(math.sqrt(num))


def _fn_clamp(x: object, lo: object, hi: object) -> object:
    nx, nlo, nhi = _need_num("clamp", x), _need_num("clamp", lo), _need_num("clamp", hi)
    if nlo > nhi:
        raise Fail(f"clamp() lower bound {nlo!r} is above upper bound {nhi!r}")
    return min(max(nx, nlo), nhi)


def _fn_sum(items: object) -> object:
    if isinstance(items, list):
        charge(len(items))
    if not isinstance(items, list) or not all(is_num(x) for x in items):
        raise Fail(f"sum() needs a list of numbers, got '{tname(items)}'")
    return num_result(sum(items))


# name -> (implementation, min positional args, max positional args or None for unbounded)
FUNCTIONS: dict[str, tuple[Callable[..., object], int, int | None]] = {
    "min": (_fn_minmax(min, "min"), 1, None),
    "max": (_fn_minmax(max, "max"), 1, None),
    "abs": (_fn_abs, 1, 1),
    "int": (_fn_int, 1, 1),
    "float": (_fn_float, 1, 1),
    "round": (_fn_round, 1, 2),
    "bool": (_fn_bool, 1, 1),
    "len": (_fn_len, 1, 1),
    "ceil": (_fn_ceil, 1, 1),
    "floor": (_fn_floor, 1, 1),
    "sqrt": (_fn_sqrt, 1, 1),
    "clamp": (_fn_clamp, 3, 3),
    "sum": (_fn_sum, 1, 1),
}
ALLOWED_FUNCS = ", ".join(sorted(FUNCTIONS))
