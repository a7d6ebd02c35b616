"""The errors archc reports to its users, and the one way they are printed.

`ArchcError` is the root of every error caused by bad input or an unusable environment (never a
bug in archc): `SpecError` (a spec, reported like a compiler does, path:line:col), and the
trainer's, experiments', weights' and diagrams' errors. `archc.cli.main` catches it once and
prints `render()`; anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class ArchcError(Exception):
    """Bad input or an unusable environment, explained in a message the user can act on."""

    def render(self) -> str:
        """What the CLI prints: `error: ` and the message."""
        return f"error: {self}"


@dataclass(frozen=True)
class Source:
    """A spec's text, kept so that errors can quote the offending line."""

    path: str
    text: str

    def line(self, lineno: int) -> str | None:
        lines = self.text.splitlines()
        return lines[lineno - 1] if 1 <= lineno <= len(lines) else None


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column inside a Source."""

    source: Source
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.source.path}:{self.line}:{self.col}"


MAX_ERRORS = 20
"""The most errors one run reports; a compiler's cap, so a broken file does not flood the
terminal."""


class SpecError(ArchcError):
    """A problem in a spec. The only exception archc lets escape for bad input.

    One SpecError may carry several independent problems of a file (`diagnostics`, in file order,
    itself first): its own message, position and `str()` are the first problem's, so callers that
    handle one error keep working, and `render()` reports them all.
    """

    def __init__(self, message: str, pos: Pos | None = None, notes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.notes = notes
        self.diagnostics: tuple[SpecError, ...] = (self,)
        self.truncated = False  # more problems were found than MAX_ERRORS

    @classmethod
    def several(cls, errors: list[SpecError], truncated: bool = False) -> SpecError:
        """One SpecError reporting every problem: duplicates dropped, sorted by position."""
        unique: dict[tuple[str, str], SpecError] = {}  # a block's mistake once, not once per call
        for err in errors:
            for diag in err.diagnostics:
                unique.setdefault((str(diag.pos), diag.message), diag)
        ordered = sorted(
            unique.values(), key=lambda d: (d.pos.line, d.pos.col) if d.pos else (1 << 30, 0)
        )
        first = ordered[0]
        out = cls(first.message, first.pos, first.notes)
        out.diagnostics = (out, *ordered[1:])
        out.truncated = truncated or any(e.truncated for e in errors)
        return out

    @property
    def line(self) -> int | None:
        return self.pos.line if self.pos else None

    @property
    def col(self) -> int | None:
        return self.pos.col if self.pos else None

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}" if self.pos else self.message

    def render(self) -> str:
        """The full report: each problem's location, message, source line with a caret and notes."""
        reports = [self.render_one()] + [d.render_one() for d in self.diagnostics[1:]]
        if len(reports) > 1 or self.truncated:
            more = f" (stopped after the first {len(reports)})" if self.truncated else ""
            reports.append(f"{len(reports)} errors{more}")
        return "\n".join(reports)

    def render_one(self) -> str:
        """This problem alone: location, message, the source line with a caret, then notes."""
        out = [f"error: {self}"]
        if self.pos is not None:
            text = self.pos.source.line(self.pos.line)
            if text is not None:
                gutter = f"{self.pos.line:>4} | "
                out.append(gutter + text)
                out.append(" " * (len(gutter) + self.pos.col - 1) + "^")
        out.extend(f"note: {note}" for note in self.notes)
        return "\n".join(out)


def did_you_mean(name: str, choices: Iterable[object]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    import difflib

    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


Loc = tuple[int | str, ...]  # a place in a document as pydantic gives it: keys and list indexes


@dataclass(frozen=True)
class Complaint:
    """One of pydantic's complaints about a value, in words fit to show a user."""

    kind: str  # pydantic's error type: "extra_forbidden", "missing", "greater_than", ...
    loc: Loc
    message: str  # e.g. "input should be greater than 0"; no "Value error, " prefix
    value: object

    @property
    def where(self) -> str:
        return ".".join(str(part) for part in self.loc)


def complaints(exc: ValidationError) -> list[Complaint]:
    """Every complaint of a ValidationError, in pydantic's order (the one function that reads
    pydantic's errors for messages)."""
    found = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        found.append(
            Complaint(
                err["type"], tuple(err["loc"]), message[:1].lower() + message[1:], err.get("input")
            )
        )
    return found


def complaint(exc: ValidationError) -> Complaint:
    """The most useful complaint: a misspelled key before the key it leaves missing."""
    return min(complaints(exc), key=lambda c: c.kind == "missing")


def option_error_message(exc: ValidationError, what: str = "training option") -> str:
    """'invalid training option lr: input should be greater than 0'."""
    found = complaint(exc)
    return (
        f"invalid {what} {found.where}: {found.message}"
        if found.where
        else f"invalid {what}s: {found.message}"
    )
