"""Template scanner: finds ``${...}`` in YAML scalars and renders them (``render``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from archc.compiler.expr.compiler import Env, evaluate
from archc.compiler.expr.errors import ExprError
from archc.compiler.expr.values import MAX_STR, MAX_VALUE, value_size


def _find_close(s: str, start: int) -> int:
    """Index of the '}' closing a '${' whose body starts at ``start``; quote- and brace-aware."""
    depth = 0
    quote = ""
    i = start
    n = len(s)
    while i < n:
        ch = s[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


@functools.lru_cache(maxsize=8192)
def _segments(s: str) -> tuple[tuple[bool, str], ...]:
    """Split a scalar into (is_expression, text) parts, resolving '$$' escapes (cached)."""
    parts: list[tuple[bool, str]] = []
    buf: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "$" and i + 1 < n:
            nxt = s[i + 1]
            if nxt == "$":
                buf.append("$")
                i += 2
                continue
            if nxt == "{":
                end = _find_close(s, i + 2)
                if end < 0:
                    raise ExprError("unterminated '${' (missing '}')", 0, s[i + 2 :])
                if buf:
                    parts.append((False, "".join(buf)))
                    buf = []
                parts.append((True, s[i + 2 : end]))
                i = end + 1
                continue
        buf.append(ch)
        i += 1
    if buf:
        parts.append((False, "".join(buf)))
    return tuple(parts)


def _to_text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if (
        value_size(value, MAX_STR) > MAX_STR
    ):  # before str(): a nested list would print far more than it weighs
        raise ExprError(
            f"value too large to interpolate into a string (limit is {MAX_STR} characters)"
        )
    return str(value)


class _Budget:
    """Units (see MAX_VALUE) that the expressions of one `render` call have produced so far: a list
    of many `${big}` scalars must not add up to more than one expression may produce."""

    def __init__(self) -> None:
        self.used = 0

    def charge(self, value: object) -> object:
        self.used += value_size(value, MAX_VALUE)
        if self.used > MAX_VALUE:
            raise ExprError(
                f"rendered values too large (limit is {MAX_VALUE:,} "
                "elements and characters in one value)"
            )
        return value


def _render_str(value: str, env: Env, budget: _Budget) -> object:
    if "$" not in value:
        return value
    stripped = value.strip()
    if len(stripped) > 1 and stripped[0] == "$" and stripped[1:].isidentifier():
        return budget.charge(evaluate(stripped[1:], env))  # '$name' shorthand
    parts = _segments(value)
    exprs = [text for is_expr, text in parts if is_expr]
    if not exprs:
        return "".join(text for _, text in parts)
    if len(exprs) == 1 and all(is_expr or not text.strip() for is_expr, text in parts):
        return budget.charge(evaluate(exprs[0], env))  # '${expr}' alone keeps its native type
    pieces: list[str] = []
    total = 0
    for is_expr, text in parts:
        piece = _to_text(evaluate(text, env)) if is_expr else text
        total += len(piece)
        if total > MAX_STR and total > len(value):  # checked as it grows, not after joining
            raise ExprError(f"interpolated string too long (limit is {MAX_STR} characters)")
        pieces.append(piece)
    return budget.charge("".join(pieces))


def render(value: object, env: Mapping[str, object]) -> object:
    """Resolve expressions inside a YAML scalar value (recursing into lists and dicts).

    - a str that is exactly ``'${expr}'`` (surrounding whitespace allowed) -> the value of
      ``expr`` with its native type (int/float/bool/str/list/None);
    - a str that is exactly ``'$name'`` (``name`` an identifier) -> ``env[name]`` (shorthand);
    - a str with ``'${expr}'`` among other text -> string interpolation, each replaced by
      ``str()`` of its value (bools as ``'true'``/``'false'``);
    - ``'$$'`` escapes a literal ``'$'``; a ``'$'`` before anything else is kept as is;
    - lists are rendered element-wise and dicts value-wise into new containers; any other
      value is returned unchanged.

    What the expressions of one call produce is bounded as a whole (MAX_VALUE), nested contents
    included, so rendering can never build a value that is expensive to print or compare.
    """
    return _render(value, env, _Budget())


def _render(value: object, env: Env, budget: _Budget) -> object:
    if isinstance(value, str):
        return _render_str(value, env, budget)
    if isinstance(value, list):
        return [_render(v, env, budget) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, env, budget) for k, v in value.items()}
    return value
