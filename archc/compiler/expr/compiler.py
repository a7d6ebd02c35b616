"""Whitelist compiler: a parsed expression becomes plain closures, checked and cached."""

from __future__ import annotations

import ast
import difflib
import functools
import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import NoReturn

from archc.compiler.expr.errors import ExprError, Fail
from archc.compiler.expr.operators import (
    ALLOWED_FUNCS,
    BAD_BINOPS,
    BAD_CMPOPS,
    BINOPS,
    CMPOPS,
    FUNCTIONS,
    unary_neg,
    unary_pos,
)
from archc.compiler.expr.values import (
    MAX_DEPTH,
    MAX_EXPR_CHARS,
    MAX_INT,
    bounded,
    import_value,
    index_into,
    tname,
    value_size,
)

CONST_NAMES: dict[str, object] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}

Env = Mapping[str, object]
Fn = Callable[[Env], object]


_REJECTED: dict[type[ast.AST], str] = {
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

    def __init__(self, fn: Fn, names: frozenset[str]) -> None:
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
    except Fail as exc:
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
    def compile(self, node: ast.AST) -> Fn:
        method = getattr(self, "c_" + type(node).__name__, None)
        if method is not None:
            return method(node)
        if type(node) in _REJECTED:
            self.fail(node, _REJECTED[type(node)])
        self.fail(node, f"{type(node).__name__} expressions are not allowed")

    def c_Expression(self, node: ast.Expression) -> Fn:
        return self.compile(node.body)

    def c_Constant(self, node: ast.Constant) -> Fn:
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

    def c_Name(self, node: ast.Name) -> Fn:
        name = node.id
        if name in CONST_NAMES:
            const = CONST_NAMES[name]
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
            return import_value(value)

        return load

    def c_Attribute(self, node: ast.Attribute) -> Fn:
        self.fail(node, f"attribute access ('.{node.attr}') is not allowed")

    def c_BinOp(self, node: ast.BinOp) -> Fn:
        op_type = type(node.op)
        if op_type in BAD_BINOPS:
            sym = BAD_BINOPS[op_type]
            hint = " (use '**' for powers)" if sym == "^" else ""
            self.fail(node, f"operator '{sym}' is not allowed{hint}")
        if op_type not in BINOPS:
            self.fail(node, f"operator {op_type.__name__} is not allowed")
        _sym, impl = BINOPS[op_type]
        left, right = self.compile(node.left), self.compile(node.right)
        off = self.offset(node)

        def binop(env: Env) -> object:
            a, b = left(env), right(env)
            return _guarded(off, lambda: impl(a, b))

        return binop

    def c_UnaryOp(self, node: ast.UnaryOp) -> Fn:
        operand = self.compile(node.operand)
        off = self.offset(node)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub):
            impl = unary_neg
        elif isinstance(node.op, ast.UAdd):
            impl = unary_pos
        else:
            self.fail(node, "operator '~' is not allowed")

        def unary(env: Env) -> object:
            a = operand(env)
            return _guarded(off, lambda: impl(a))

        return unary

    def c_BoolOp(self, node: ast.BoolOp) -> Fn:
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

    def c_Compare(self, node: ast.Compare) -> Fn:
        ops: list[tuple[str, Callable[[object, object], object]]] = []
        for op in node.ops:
            if type(op) in BAD_CMPOPS:
                self.fail(node, f"operator '{BAD_CMPOPS[type(op)]}' is not allowed")
            if type(op) not in CMPOPS:
                self.fail(node, f"comparison {type(op).__name__} is not allowed")
            ops.append(CMPOPS[type(op)])
        first = self.compile(node.left)
        rest = [self.compile(c) for c in node.comparators]
        steps = list(zip(ops, rest, strict=True))
        off = self.offset(node)

        def compare(env: Env) -> object:
            a = first(env)
            for (sym, fn), comp in steps:
                b = comp(env)
                if isinstance(a, (list, dict, str)) and isinstance(b, (list, dict, str)):
                    (
                        value_size(a),
                        value_size(b),
                    )  # comparing containers costs their size: charged to the budget
                try:
                    ok = bool(fn(a, b))
                except TypeError:
                    raise ExprError(
                        f"cannot compare '{tname(a)}' {sym} '{tname(b)}'", off
                    ) from None
                if not ok:
                    return False
                a = b
            return True

        return compare

    def c_Subscript(self, node: ast.Subscript) -> Fn:
        """`depths[i]`, `depths[-1]`, `stage['planes']`, `depths[:s]`:
        elements of a list, string or mapping."""
        container, key = self.compile(node.value), self.compile(node.slice)
        off = self.offset(node)

        def subscript(env: Env) -> object:
            value, index = container(env), key(env)
            return _guarded(off, lambda: import_value(index_into(value, index)))

        return subscript

    def c_Slice(self, node: ast.Slice) -> Fn:
        bounds = [
            self.compile(b) if b is not None else None for b in (node.lower, node.upper, node.step)
        ]
        off = self.offset(node)

        def make(env: Env) -> object:
            values = [b(env) if b is not None else None for b in bounds]
            for v in values:
                if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                    raise ExprError(f"slice bounds must be integers, got '{tname(v)}'", off)
            if values[2] == 0:
                raise ExprError("slice step cannot be zero", off)
            return slice(*values)

        return make

    def c_IfExp(self, node: ast.IfExp) -> Fn:
        test, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
        return lambda env: body(env) if test(env) else orelse(env)

    def c_List(self, node: ast.List) -> Fn:
        items = [self.compile(e) for e in node.elts]
        off = self.offset(node)

        def build(env: Env) -> object:
            value = [f(env) for f in items]
            return _guarded(
                off, lambda: bounded(value)
            )  # `[d, d, d]` must not multiply a large d unseen

        return build

    c_Tuple = c_List  # tuples evaluate to lists, like YAML sequences

    def c_Call(self, node: ast.Call) -> Fn:
        func = node.func
        if not isinstance(func, ast.Name):
            self.compile(func)  # reports the forbidden construct (attribute, lambda, ...)
            self.fail(node, f"only calls to these functions are allowed: {ALLOWED_FUNCS}")
        fname = func.id
        if fname.startswith("__"):
            self.fail(func, f"dunder name '{fname}' is not allowed")
        if fname not in FUNCTIONS:
            self.fail(func, f"call to function '{fname}' is not allowed (allowed: {ALLOWED_FUNCS})")
        if node.keywords:
            kw = node.keywords[0]
            shown = f"'{kw.arg}='" if kw.arg else "'**'"
            self.fail(
                kw, f"keyword arguments ({shown}) are not allowed; pass arguments by position"
            )
        args = [self.compile(a) for a in node.args]
        impl, lo, hi = FUNCTIONS[fname]
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
            if depth > MAX_DEPTH:
                raise ExprError(
                    f"expression too deeply nested (limit is {MAX_DEPTH} levels)",
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
        raise ExprError(f"expression must be a string, got '{tname(text)}'")
    try:
        return _compile(text)
    except ExprError as exc:
        exc.text = text
        raise


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
