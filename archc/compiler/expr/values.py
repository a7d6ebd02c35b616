"""Size limits and value helpers shared by the operators, functions and the compiler."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from contextvars import ContextVar

from archc.compiler.expr.errors import ExprError, Fail

MAX_EXPR_CHARS = 1000
"""Longest expression text accepted; bounds parse time and AST size."""

MAX_INT = 10**18
"""Largest absolute int any operation may produce; keeps big-int arithmetic cheap."""

MAX_STR = 10_000  # longest string an expression may build (and most interpolation growth)
MAX_LIST = 10_000  # longest list an expression may build
MAX_VALUE = 100_000  # largest value an expression may produce: one unit per scalar and container,
# plus a string's characters, nested contents included (so nesting cannot multiply it unseen)
MAX_WORK = (
    5_000_000  # units of values walked, built or compared while one spec expands (see work_budget)
)
MAX_POW_EXP = 64  # largest |exponent| for ``**``
MAX_DEPTH = 100  # deepest expression nesting; keeps the closure recursion far from the limit


class _Meter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit


_METER: ContextVar[_Meter | None] = ContextVar("archc_expr_meter", default=None)


@contextlib.contextmanager
def work_budget(limit: int = MAX_WORK) -> Iterator[None]:
    """Bound the total work of every expression evaluated inside: each value one builds, renders or
    compares is bounded alone (MAX_VALUE), and this bounds how often that may happen."""
    token = _METER.set(_Meter(limit))
    _SIZES.clear()
    try:
        yield
    finally:
        _METER.reset(token)
        _SIZES.clear()


def charge(units: int) -> None:
    """Count `units` of work against the current work_budget (none outside one)."""
    meter = _METER.get()
    if meter is not None:
        meter.left -= units
        if meter.left < 0:
            raise ExprError(
                f"the spec's expressions do too much work (more than {meter.limit:,} "
                "elements and characters built, rendered or compared while expanding it)"
            )


# Sizes of containers already measured, keyed by id with the object kept alive (so the id cannot be
# reused): spec values are never mutated once built, and a stage table referenced by every layer
# or compared in every repetition must not be walked again each time. Cleared per work_budget.
_SIZES: dict[int, tuple[object, int]] = {}
_MAX_CACHED = 20_000


def value_size(value: object, limit: int = MAX_VALUE) -> int:
    """Units in `value` (see MAX_VALUE), counted iteratively; stops early once past `limit`.

    Shared sub-lists count every time they appear: that is what rendering or comparing costs.
    The size is charged to the current work_budget: it is the work of whatever is done with it.
    """
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (list, dict)):
            known = _SIZES.get(id(item))
            if known is not None and known[0] is item:
                total += known[1]
                continue
        total += 1
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                total += len(key) if isinstance(key, str) else 1
                stack.append(inner)
    if (
        not stack and isinstance(value, (list, dict)) and total > 64
    ):  # complete, and worth remembering
        if len(_SIZES) >= _MAX_CACHED:
            _SIZES.clear()
        _SIZES[id(value)] = (value, total)
    charge(total)
    return total


def bounded(value: object) -> object:
    """`value` if it is within MAX_VALUE, else a failure: checked before
    anything renders or compares it."""
    if value_size(value) > MAX_VALUE:
        raise Fail(
            f"value too large (limit is {MAX_VALUE:,} elements "
            "and characters, nested contents included)"
        )
    return value


def tname(value: object) -> str:
    """Type name as a spec author would think of it (YAML-ish)."""
    if value is None:
        return "null"
    return type(value).__name__


def is_num(value: object) -> bool:
    return isinstance(value, (int, float))


def num_result(value: object) -> object:
    """Check a numeric result against the size limits."""
    if isinstance(value, int):
        if value > MAX_INT or value < -MAX_INT:
            raise Fail(f"integer result too large (limit is {MAX_INT:.0e} in absolute value)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Fail("float overflow (result is not finite)")
    elif isinstance(value, complex):
        raise Fail("complex result is not allowed")
    return value


_PLAIN_TYPES = frozenset({int, float, bool, str, list, type(None)})


def import_value(value: object) -> object:
    """Normalise an env value: tuples become lists, numpy-style scalars plain numbers."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def require_nums(sym: str, a: object, b: object) -> None:
    if not (is_num(a) and is_num(b)):
        raise Fail(f"unsupported operand types for {sym}: '{tname(a)}' and '{tname(b)}'")


def index_into(value: object, index: object) -> object:
    """`value[index]` for the containers a spec holds: lists and strings by
    int or slice, mappings by key."""
    if isinstance(value, (list, str)):
        if isinstance(index, slice):
            return value[index]  # no bigger than the value itself
        if not isinstance(index, int) or isinstance(index, bool):
            raise Fail(f"a {tname(value)} index must be an integer, got '{tname(index)}'")
        if not -len(value) <= index < len(value):
            raise Fail(f"index {index} is out of range for a {tname(value)} of length {len(value)}")
        return value[index]
    if isinstance(value, dict):
        if not isinstance(index, str):
            raise Fail(f"a mapping is indexed by a key name, got '{tname(index)}'")
        if index not in value:
            keys = ", ".join(repr(k) for k in value) or "none"
            raise Fail(f"key {index!r} is not in the mapping (keys: {keys})")
        return value[index]
    raise Fail(f"a '{tname(value)}' cannot be indexed (only lists, strings and mappings)")
