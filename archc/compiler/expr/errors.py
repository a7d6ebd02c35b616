"""The one error type expressions raise, and the internal failure operations signal."""

from __future__ import annotations


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


class Fail(Exception):
    """Internal: an operation failed; the calling closure adds the source offset."""
