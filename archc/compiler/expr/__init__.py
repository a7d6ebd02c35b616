"""Safe evaluator for the ``${...}`` expressions allowed in archc YAML specs.

Specs are data that may come from anywhere, so expressions must never reach Python's
``eval``/``exec``.  ``ast.parse(..., mode="eval")`` is used purely as a parser; the tree is
then checked against a whitelist of node types and compiled into plain Python closures, which
are cached per expression text (specs evaluate the same few expressions thousands of times).

Every failure -- bad syntax, a forbidden construct, an undefined name, division by zero, a
number or string that grows too large -- is reported as :class:`ExprError`, never as some
other exception, so callers can attach spec locations to one error type.
"""

from archc.compiler.expr.compiler import evaluate, names_in
from archc.compiler.expr.errors import ExprError
from archc.compiler.expr.template import render
from archc.compiler.expr.values import MAX_EXPR_CHARS, MAX_INT, MAX_VALUE, MAX_WORK, work_budget

__all__ = [
    "MAX_EXPR_CHARS",
    "MAX_INT",
    "MAX_VALUE",
    "MAX_WORK",
    "ExprError",
    "evaluate",
    "names_in",
    "render",
    "work_budget",
]
