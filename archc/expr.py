"""Safe evaluator for the ``${...}`` expressions allowed in archc YAML specs.

Specs are data that may come from anywhere, so expressions must never reach Python's
``eval``/``exec``.  ``ast.parse(..., mode="eval")`` is used purely as a parser; the tree is
then checked against a whitelist of node types and compiled into plain Python closures, which
are cached per expression text (specs evaluate the same few expressions thousands of times).

Every failure -- bad syntax, a forbidden construct, an undefined name, division by zero, a
number or string that grows too large -- is reported as :class:`ExprError`, never as some
other exception, so callers can attach spec locations to one error type.
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import numbers
import re
import warnings
from collections.abc import Callable, Mapping
from typing import NoReturn

__all__ = ["MAX_EXPR_CHARS", "MAX_INT", "ExprError", "evaluate", "names_in", "render"]

MAX_EXPR_CHARS = 1000
"""Longest expression text accepted; bounds parse time and AST size."""

MAX_INT = 10**18
"""Largest absolute int any operation may produce; keeps big-int arithmetic cheap."""

_MAX_STR = 10_000  # longest string an expression may build (and most interpolation growth)
_MAX_LIST = 10_000  # longest list an expression may build
_MAX_POW_EXP = 64  # largest |exponent| for ``**``
_MAX_DEPTH = 100  # deepest expression nesting; keeps the closure recursion far from the limit

_CONST_NAMES: dict[str, object] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}

Env = Mapping[str, object]
_Fn = Callable[[Env], object]


class ExprError(Exception):
    """Raised for any bad expression, so callers only ever need to handle one error type.

    ``message`` is the human-readable reason, ``offset`` the 0-based column inside the
    expression text (0 when unknown) and ``text`` the expression itself when known.
    """

    def __init__(self, message: str, offset: int = 0, text: str = "") -> None:
        super().__init__(message, offset, text)
        self.message = message
        self.offset = offset
        self.text = text

    def __reduce__(self) -> tuple[type[ExprError], tuple[str, int, str]]:
        return (ExprError, (self.message, self.offset, self.text))

    def __str__(self) -> str:
        if not self.text:
            return self.message
        return f"{self.message} (in ${{{self.text}}} at column {self.offset})"


class _Fail(Exception):
    """Internal: an operation failed; the calling closure adds the source offset."""


# --------------------------------------------------------------------------- value helpers


def _tname(value: object) -> str:
    """Type name as a spec author would think of it (YAML-ish)."""
    if value is None:
        return "null"
    return type(value).__name__


def _is_num(value: object) -> bool:
    return isinstance(value, (int, float))


def _num_result(value: object) -> object:
    """Check a numeric result against the size limits."""
    if isinstance(value, int):
        if value > MAX_INT or value < -MAX_INT:
            raise _Fail(f"integer result too large (limit is {MAX_INT:.0e} in absolute value)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Fail("float overflow (result is not finite)")
    elif isinstance(value, complex):
        raise _Fail("complex result is not allowed")
    return value


_PLAIN_TYPES = frozenset({int, float, bool, str, list, type(None)})


def _import_value(value: object) -> object:
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


def _require_nums(sym: str, a: object, b: object) -> None:
    if not (_is_num(a) and _is_num(b)):
        raise _Fail(f"unsupported operand types for {sym}: '{_tname(a)}' and '{_tname(b)}'")


# --------------------------------------------------------------------------- operators


def _op_add(a: object, b: object) -> object:
    if _is_num(a) and _is_num(b):
        return _num_result(a + b)  # type: ignore[operator]
    if isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > _MAX_STR:
            raise _Fail(f"string result too long (limit is {_MAX_STR} characters)")
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        if len(a) + len(b) > _MAX_LIST:
            raise _Fail(f"list result too long (limit is {_MAX_LIST} elements)")
        return a + b
    raise _Fail(f"unsupported operand types for +: '{_tname(a)}' and '{_tname(b)}'")


def _op_sub(a: object, b: object) -> object:
    _require_nums("-", a, b)
    return _num_result(a - b)  # type: ignore[operator]


def _op_mul(a: object, b: object) -> object:
    if not (_is_num(a) and _is_num(b)):
        raise _Fail(f"only numbers may be multiplied (got '{_tname(a)}' * '{_tname(b)}')")
    return _num_result(a * b)  # type: ignore[operator]


def _op_div(a: object, b: object) -> object:
    _require_nums("/", a, b)
    return _num_result(a / b)  # type: ignore[operator]


def _op_floordiv(a: object, b: object) -> object:
    _require_nums("//", a, b)
    return _num_result(a // b)  # type: ignore[operator]


def _op_mod(a: object, b: object) -> object:
    # Numbers only: on strings '%' would be printf-style formatting.
    _require_nums("%", a, b)
    return _num_result(a % b)  # type: ignore[operator]


def _op_pow(a: object, b: object) -> object:
    _require_nums("**", a, b)
    if abs(b) > _MAX_POW_EXP:  # type: ignore[arg-type]
        raise _Fail(f"exponent too large (limit is {_MAX_POW_EXP} in absolute value)")
    # |a| >= 2**(bits-1), so an int result is at least 2**((bits-1)*b) and MAX_INT < 2**60.
    # Rejecting on this bound first keeps the exact computation below tiny (< 2**125).
    if isinstance(a, int) and isinstance(b, int) and b > 0 and (abs(a).bit_length() - 1) * b > 60:
        raise _Fail(f"integer result too large (limit is {MAX_INT:.0e} in absolute value)")
    return _num_result(a**b)  # type: ignore[operator]


_BINOPS: dict[type[ast.operator], tuple[str, Callable[[object, object], object]]] = {
    ast.Add: ("+", _op_add),
    ast.Sub: ("-", _op_sub),
    ast.Mult: ("*", _op_mul),
    ast.Div: ("/", _op_div),
    ast.FloorDiv: ("//", _op_floordiv),
    ast.Mod: ("%", _op_mod),
    ast.Pow: ("**", _op_pow),
}
_BAD_BINOPS: dict[type[ast.operator], str] = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
}

_CMPOPS: dict[type[ast.cmpop], tuple[str, Callable[[object, object], object]]] = {
    ast.Eq: ("==", lambda a, b: a == b),
    ast.NotEq: ("!=", lambda a, b: a != b),
    ast.Lt: ("<", lambda a, b: a < b),  # type: ignore[operator]
    ast.LtE: ("<=", lambda a, b: a <= b),  # type: ignore[operator]
    ast.Gt: (">", lambda a, b: a > b),  # type: ignore[operator]
    ast.GtE: (">=", lambda a, b: a >= b),  # type: ignore[operator]
}
_BAD_CMPOPS: dict[type[ast.cmpop], str] = {
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


def _unary_neg(a: object) -> object:
    if not _is_num(a):
        raise _Fail(f"bad operand type for unary -: '{_tname(a)}'")
    return _num_result(-a)  # type: ignore[operator]


def _unary_pos(a: object) -> object:
    if not _is_num(a):
        raise _Fail(f"bad operand type for unary +: '{_tname(a)}'")
    return _num_result(+a)  # type: ignore[operator]


# --------------------------------------------------------------------------- functions


def _need_num(fname: str, value: object) -> float | int:
    if not _is_num(value):
        raise _Fail(f"{fname}() needs a number, got '{_tname(value)}'")
    return value  # type: ignore[return-value]


def _fn_minmax(pick: Callable[..., object], fname: str) -> Callable[..., object]:
    def impl(*args: object) -> object:
        items: object = args
        if len(args) == 1:
            items = args[0]
            if not isinstance(items, list):
                raise _Fail(f"{fname}() with one argument needs a list, got '{_tname(items)}'")
            if not items:
                raise _Fail(f"{fname}() of an empty list")
        try:
            return pick(items)
        except TypeError:
            raise _Fail(f"{fname}() cannot compare these values") from None

    return impl


def _fn_abs(x: object) -> object:
    return _num_result(abs(_need_num("abs", x)))


def _fn_int(x: object) -> object:
    if isinstance(x, str):
        if len(x.strip()) > 40:
            raise _Fail("int() argument string too long")
        try:
            return _num_result(int(x))
        except ValueError:
            raise _Fail(f"int() cannot parse {x!r}") from None
    return _num_result(int(_need_num("int", x)))


def _fn_float(x: object) -> object:
    if isinstance(x, str):
        if len(x.strip()) > 400:
            raise _Fail("float() argument string too long")
        try:
            return _num_result(float(x))
        except ValueError:
            raise _Fail(f"float() cannot parse {x!r}") from None
    return _num_result(float(_need_num("float", x)))


def _fn_round(x: object, ndigits: object = None) -> object:
    num = _need_num("round", x)
    if ndigits is None:
        return _num_result(round(num))
    if not isinstance(ndigits, int):
        raise _Fail(f"round() ndigits must be an int, got '{_tname(ndigits)}'")
    if abs(ndigits) > _MAX_POW_EXP:  # round(int, -n) computes 10**n
        raise _Fail(f"round() ndigits too large (limit is {_MAX_POW_EXP})")
    return _num_result(round(num, ndigits))


def _fn_bool(x: object) -> object:
    return bool(x)


def _fn_len(x: object) -> object:
    if not isinstance(x, (list, str)):
        raise _Fail(f"len() needs a list or string, got '{_tname(x)}'")
    return len(x)


def _fn_ceil(x: object) -> object:
    return _num_result(math.ceil(_need_num("ceil", x)))


def _fn_floor(x: object) -> object:
    return _num_result(math.floor(_need_num("floor", x)))


def _fn_sqrt(x: object) -> object:
    num = _need_num("sqrt", x)
    if num < 0:
        raise _Fail("sqrt() of a negative number")
    return _num_result(math.sqrt(num))


def _fn_clamp(x: object, lo: object, hi: object) -> object:
    nx, nlo, nhi = _need_num("clamp", x), _need_num("clamp", lo), _need_num("clamp", hi)
    if nlo > nhi:
        raise _Fail(f"clamp() lower bound {nlo!r} is above upper bound {nhi!r}")
    return min(max(nx, nlo), nhi)


# name -> (implementation, min positional args, max positional args or None for unbounded)
_FUNCTIONS: dict[str, tuple[Callable[..., object], int, int | None]] = {
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
}
_ALLOWED_FUNCS = ", ".join(sorted(_FUNCTIONS))


# --------------------------------------------------------------------------- compiler

_REJECTED: dict[type[ast.AST], str] = {
    ast.Subscript: "subscripts / indexing (x[...]) are not allowed",
    ast.Slice: "slices are not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.ListComp: "list comprehensions are not allowed",
    ast.SetComp: "set comprehensions are not allowed",
    ast.DictComp: "dict comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions (comprehensions) are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "the walrus operator ':=' (assignment expression) is not allowed",
    ast.Starred: "starred expressions (*x) are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield from' is not allowed",
}


class _Compiled:
    """A checked expression: a closure over the env plus the free names it reads."""

    __slots__ = ("fn", "names")

    def __init__(self, fn: _Fn, names: frozenset[str]) -> None:
        self.fn = fn
        self.names = names


def _undefined(name: str, env: Env) -> str:
    msg = f"undefined name '{name}'"
    try:
        keys = [k for k in env if isinstance(k, str)]
    except Exception:  # an exotic Mapping; the hint is optional
        keys = []
    close = difflib.get_close_matches(name, keys, n=1)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    return msg


def _guarded(off: int, op: Callable[[], object]) -> object:
    """Run one operation, turning any failure into an ExprError at ``off``."""
    try:
        return op()
    except ExprError:
        raise
    except _Fail as exc:
        raise ExprError(str(exc), off) from None
    except ZeroDivisionError:
        raise ExprError("division by zero", off) from None
    except OverflowError:
        raise ExprError("numeric overflow", off) from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ExprError(str(exc) or type(exc).__name__, off) from None


class _Compiler:
    """Turns a whitelisted AST into closures; offsets are made relative to the raw text."""

    def __init__(self, src: str, lead: int) -> None:
        self.src = src
        self.lead = lead
        self.names: set[str] = set()
        # char offset of each line start in ``src``, for lineno/col -> absolute offsets
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", src)]

    # -- helpers
    def offset(self, node: ast.AST) -> int:
        lineno = getattr(node, "lineno", 1) or 1
        col = getattr(node, "col_offset", 0) or 0
        if not 1 <= lineno <= len(self.line_starts):
            return self.lead
        start = self.line_starts[lineno - 1]
        # ast columns count UTF-8 bytes; convert to characters
        line = self.src[start : start + col + 1]
        chars = len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))
        return self.lead + start + chars

    def fail(self, node: ast.AST, message: str) -> NoReturn:
        raise ExprError(message, self.offset(node))

    # -- dispatch
    def compile(self, node: ast.AST) -> _Fn:
        method = getattr(self, "c_" + type(node).__name__, None)
        if method is not None:
            return method(node)  # type: ignore[no-any-return]
        if type(node) in _REJECTED:
            self.fail(node, _REJECTED[type(node)])
        self.fail(node, f"{type(node).__name__} expressions are not allowed")

    def c_Expression(self, node: ast.Expression) -> _Fn:
        return self.compile(node.body)

    def c_Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if isinstance(value, complex):
            self.fail(node, "complex number literals are not allowed")
        if isinstance(value, bytes):
            self.fail(node, "bytes literals are not allowed")
        if value is Ellipsis:
            self.fail(node, "'...' (Ellipsis) is not allowed")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            self.fail(node, f"integer literal too large (limit is {MAX_INT:.0e})")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, "float literal overflows (is not finite)")
        return lambda env: value

    def c_Name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name in _CONST_NAMES:
            const = _CONST_NAMES[name]
            return lambda env: const
        if name.startswith("__"):
            self.fail(node, f"dunder name '{name}' is not allowed")
        self.names.add(name)
        off = self.offset(node)

        def load(env: Env) -> object:
            try:
                value = env[name]
            except KeyError:
                raise ExprError(_undefined(name, env), off) from None
            return _import_value(value)

        return load

    def c_Attribute(self, node: ast.Attribute) -> _Fn:
        self.fail(node, f"attribute access ('.{node.attr}') is not allowed")

    def c_BinOp(self, node: ast.BinOp) -> _Fn:
        op_type = type(node.op)
        if op_type in _BAD_BINOPS:
            sym = _BAD_BINOPS[op_type]
            hint = " (use '**' for powers)" if sym == "^" else ""
            self.fail(node, f"operator '{sym}' is not allowed{hint}")
        if op_type not in _BINOPS:
            self.fail(node, f"operator {op_type.__name__} is not allowed")
        _sym, impl = _BINOPS[op_type]
        left, right = self.compile(node.left), self.compile(node.right)
        off = self.offset(node)

        def binop(env: Env) -> object:
            a, b = left(env), right(env)
            return _guarded(off, lambda: impl(a, b))

        return binop

    def c_UnaryOp(self, node: ast.UnaryOp) -> _Fn:
        operand = self.compile(node.operand)
        off = self.offset(node)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub):
            impl = _unary_neg
        elif isinstance(node.op, ast.UAdd):
            impl = _unary_pos
        else:
            self.fail(node, "operator '~' is not allowed")

        def unary(env: Env) -> object:
            a = operand(env)
            return _guarded(off, lambda: impl(a))

        return unary

    def c_BoolOp(self, node: ast.BoolOp) -> _Fn:
        parts = [self.compile(v) for v in node.values]
        is_and = isinstance(node.op, ast.And)

        def boolop(env: Env) -> object:
            value: object = None
            for part in parts:
                value = part(env)
                if bool(value) != is_and:  # and: stop at falsy; or: stop at truthy
                    return value
            return value

        return boolop

    def c_Compare(self, node: ast.Compare) -> _Fn:
        ops: list[tuple[str, Callable[[object, object], object]]] = []
        for op in node.ops:
            if type(op) in _BAD_CMPOPS:
                self.fail(node, f"operator '{_BAD_CMPOPS[type(op)]}' is not allowed")
            if type(op) not in _CMPOPS:
                self.fail(node, f"comparison {type(op).__name__} is not allowed")
            ops.append(_CMPOPS[type(op)])
        first = self.compile(node.left)
        rest = [self.compile(c) for c in node.comparators]
        steps = list(zip(ops, rest, strict=True))
        off = self.offset(node)

        def compare(env: Env) -> object:
            a = first(env)
            for (sym, fn), comp in steps:
                b = comp(env)
                try:
                    ok = bool(fn(a, b))
                except TypeError:
                    raise ExprError(
                        f"cannot compare '{_tname(a)}' {sym} '{_tname(b)}'", off
                    ) from None
                if not ok:
                    return False
                a = b
            return True

        return compare

    def c_IfExp(self, node: ast.IfExp) -> _Fn:
        test, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
        return lambda env: body(env) if test(env) else orelse(env)

    def c_List(self, node: ast.List) -> _Fn:
        items = [self.compile(e) for e in node.elts]
        return lambda env: [f(env) for f in items]

    c_Tuple = c_List  # tuples evaluate to lists, like YAML sequences

    def c_Call(self, node: ast.Call) -> _Fn:
        func = node.func
        if not isinstance(func, ast.Name):
            self.compile(func)  # reports the forbidden construct (attribute, lambda, ...)
            self.fail(node, f"only calls to these functions are allowed: {_ALLOWED_FUNCS}")
        fname = func.id
        if fname.startswith("__"):
            self.fail(func, f"dunder name '{fname}' is not allowed")
        if fname not in _FUNCTIONS:
            self.fail(
                func, f"call to function '{fname}' is not allowed (allowed: {_ALLOWED_FUNCS})"
            )
        if node.keywords:
            kw = node.keywords[0]
            shown = f"'{kw.arg}='" if kw.arg else "'**'"
            self.fail(
                kw, f"keyword arguments ({shown}) are not allowed; pass arguments by position"
            )
        args = [self.compile(a) for a in node.args]
        impl, lo, hi = _FUNCTIONS[fname]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = str(lo) if lo == hi else f"{lo}+" if hi is None else f"{lo} to {hi}"
            self.fail(node, f"{fname}() takes {want} arguments, got {len(args)}")
        off = self.offset(node)

        def call(env: Env) -> object:
            values = [f(env) for f in args]
            try:
                return _guarded(off, lambda: impl(*values))
            except ExprError as exc:
                if exc.offset == off and not exc.message.startswith(fname + "()"):
                    exc.message = f"{fname}(): {exc.message}"
                    exc.args = (exc.message, exc.offset, exc.text)
                raise

        return call


def _check_depth(tree: ast.AST, compiler: _Compiler) -> None:
    """Reject absurdly nested trees iteratively, before anything recurses over them."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr):
            depth += 1
            if depth > _MAX_DEPTH:
                raise ExprError(
                    f"expression too deeply nested (limit is {_MAX_DEPTH} levels)",
                    compiler.offset(node),
                )
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))


@functools.lru_cache(maxsize=8192)
def _compile(text: str) -> _Compiled:
    """Parse, check and compile one expression text; cached because specs repeat them."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression too long ({len(text)} > {MAX_EXPR_CHARS} characters)")
    src = text.lstrip()
    lead = len(text) - len(src)
    src = src.rstrip()
    if not src:
        raise ExprError("empty expression")
    try:
        with warnings.catch_warnings():
            # e.g. "invalid escape sequence": noise for spec authors, not an error here
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        off = lead
        if exc.offset:
            lines = re.split(r"\r\n|\r|\n", src)
            lineno = min(max(exc.lineno or 1, 1), len(lines))
            off = lead + sum(len(s) + 1 for s in lines[: lineno - 1]) + exc.offset - 1
        off = min(max(off, 0), len(text))
        detail = "" if exc.msg == "invalid syntax" else f": {exc.msg}"
        raise ExprError(f"invalid syntax{detail}", off) from None
    except RecursionError:
        raise ExprError("expression too deeply nested") from None
    except MemoryError:
        raise ExprError("expression too complex to parse") from None
    except ValueError as exc:
        raise ExprError(f"invalid expression: {exc}") from None
    compiler = _Compiler(src, lead)
    _check_depth(tree, compiler)
    try:
        fn = compiler.compile(tree)
    except RecursionError:
        raise ExprError("expression too deeply nested") from None
    return _Compiled(fn, frozenset(compiler.names))


def _compile_for(text: object) -> _Compiled:
    if not isinstance(text, str):
        raise ExprError(f"expression must be a string, got '{_tname(text)}'")
    try:
        return _compile(text)
    except ExprError as exc:
        exc.text = text
        raise


# --------------------------------------------------------------------------- public API


def evaluate(text: str, env: Mapping[str, object]) -> object:
    """Evaluate one expression (the text inside ``${...}``, without the braces).

    Returns a plain value (int, float, bool, str, list or None, or an env value as-is);
    raises :class:`ExprError` for anything wrong, including undefined names.
    """
    code = _compile_for(text)
    try:
        return code.fn(env)
    except ExprError as exc:
        exc.text = text
        raise
    except RecursionError:
        raise ExprError("expression too deeply nested", 0, text) from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        # Safety net for exotic env values (e.g. objects whose truth value raises).
        raise ExprError(str(exc) or type(exc).__name__, 0, text) from None


def names_in(text: str) -> set[str]:
    """Free variable names an expression reads (for error messages and dependency checks).

    Constants (true/false/null, True/False/None) and called function names are excluded.
    Raises :class:`ExprError` if the expression is invalid.
    """
    return set(_compile_for(text).names)


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
    return str(value)


def _render_str(value: str, env: Env) -> object:
    if "$" not in value:
        return value
    stripped = value.strip()
    if len(stripped) > 1 and stripped[0] == "$" and stripped[1:].isidentifier():
        return evaluate(stripped[1:], env)  # '$name' shorthand
    parts = _segments(value)
    exprs = [text for is_expr, text in parts if is_expr]
    if not exprs:
        return "".join(text for _, text in parts)
    if len(exprs) == 1 and all(is_expr or not text.strip() for is_expr, text in parts):
        return evaluate(exprs[0], env)  # '${expr}' alone keeps its native type
    out = "".join(_to_text(evaluate(text, env)) if is_expr else text for is_expr, text in parts)
    if len(out) > _MAX_STR and len(out) > len(value):
        raise ExprError(f"interpolated string too long (limit is {_MAX_STR} characters)")
    return out


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
    """
    if isinstance(value, str):
        return _render_str(value, env)
    if isinstance(value, list):
        return [render(v, env) for v in value]
    if isinstance(value, dict):
        return {k: render(v, env) for k, v in value.items()}
    return value
