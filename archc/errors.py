"""SpecError: every problem with a user's spec, reported like a compiler does (path:line:col)."""

from __future__ import annotations

from dataclasses import dataclass


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


class SpecError(Exception):
    """A problem in a spec. The only exception archc lets escape for bad input."""

    def __init__(self, message: str, pos: Pos | None = None, notes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.notes = notes

    @property
    def line(self) -> int | None:
        return self.pos.line if self.pos else None

    @property
    def col(self) -> int | None:
        return self.pos.col if self.pos else None

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}" if self.pos else self.message

    def render(self) -> str:
        """The full report: location, message, the source line with a caret, then notes."""
        out = [f"error: {self}"]
        if self.pos is not None:
            text = self.pos.source.line(self.pos.line)
            if text is not None:
                gutter = f"{self.pos.line:>4} | "
                out.append(gutter + text)
                out.append(" " * (len(gutter) + self.pos.col - 1) + "^")
        out.extend(f"note: {note}" for note in self.notes)
        return "\n".join(out)


def did_you_mean(name: str, choices: object) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    import difflib

    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)  # type: ignore[union-attr]
    return f" (did you mean '{matches[0]}'?)" if matches else ""
