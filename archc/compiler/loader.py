"""Stage 1, load: YAML text -> plain Python values that remember their line and column.

ruamel.yaml's round-trip loader gives positions; we copy its tree into `LDict`/`LList` (dict and
list subclasses carrying positions) so later stages work with ordinary containers. The copy is also
where hostile YAML is stopped: Python-object tags are refused, and an alias bomb hits the
node budget before it can expand.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.errors import Pos, Source, SpecError

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

MAX_FILE_BYTES = 1_000_000
# ruamel's pure-Python parser takes about 30 us a node: 10,000 nodes (12x the largest zoo spec,
# Inception v3's 848) parse in about 0.35 CPU-seconds, so no document reaches the 2 s goal by size.
MAX_YAML_NODES = 10_000


class LDict(dict):
    """A mapping from a spec, with the positions of itself, its keys and its values."""

    pos: Pos | None
    key_pos: dict[Any, Pos | None]
    value_pos: dict[Any, Pos | None]


class LList(list):
    """A sequence from a spec, with the positions of itself and its items."""

    pos: Pos | None
    item_pos: list[Pos | None]


def position_of(container: object, key: object | None = None) -> Pos | None:
    """Best position for `container[key]` (or the container itself when key is None)."""
    if key is not None:
        if isinstance(container, LDict):
            return container.value_pos.get(key) or container.key_pos.get(key) or container.pos
        if (
            isinstance(container, LList)
            and isinstance(key, int)
            and 0 <= key < len(container.item_pos)
        ):
            return container.item_pos[key] or container.pos
    return getattr(container, "pos", None)


def key_position(container: object, key: object) -> Pos | None:
    """Position of a mapping's key (where a misspelled key should be reported)."""
    if isinstance(container, LDict):
        return container.key_pos.get(key) or container.pos
    return getattr(container, "pos", None)


def is_union_tag(step: object) -> bool:
    """A union member's tag in a pydantic error loc ('InitRule',
    'literal[...]'), not a key of the spec."""
    return isinstance(step, str) and (
        step[:1].isupper()
        or step in ("int", "float", "bool", "str", "none")
        or step.startswith(("literal[", "union[", "function-", "list[", "dict[", "tuple["))
    )


def locate(root: object, path: tuple[Any, ...]) -> Pos | None:
    """Position of the deepest element of `path` reachable from `root` (for pydantic error locs)."""
    best = getattr(root, "pos", None)
    node = root
    for step in path:
        if (isinstance(node, LDict) and step in node) or (
            isinstance(node, LList) and isinstance(step, int) and 0 <= step < len(node)
        ):
            best = position_of(node, step) or best
            node = node[step]
        elif is_union_tag(step):
            continue
        else:
            break
    return best


@dataclass
class Document:
    """A loaded spec file: its plain data with positions, and the source for error messages."""

    data: LDict
    source: Source


_SAFE_TAGS = {
    None,
    "",
    "?",
    "!",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:omap",
}


def load_text(text: str, path: str = "<string>", max_nodes: int = MAX_YAML_NODES) -> Document:
    """Parse YAML text into a Document; every failure is a SpecError with a position."""
    from ruamel.yaml.composer import MaxDepthExceededError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    source = Source(path, text)
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise SpecError(f"spec is larger than {MAX_FILE_BYTES:,} bytes", Pos(source, 1, 1))
    try:
        tree = _parse(text, max_nodes)
    except _NodeLimit as exc:
        raise SpecError(
            exc.message or f"spec has more than {max_nodes:,} YAML nodes",
            Pos(source, exc.line + 1, exc.column + 1),
        ) from None
    except MaxDepthExceededError as exc:
        mark = exc.problem_mark
        pos = Pos(source, mark.line + 1, mark.column + 1) if mark else Pos(source, 1, 1)
        raise SpecError(f"YAML nesting deeper than {MAX_DEPTH} levels", pos) from None
    except MarkedYAMLError as exc:
        advice = yaml_advice(exc, text.splitlines())
        if advice is not None:
            message, (line, col) = advice
            raw = " ".join(p for p in (exc.context, exc.problem) if p)
            raise SpecError(
                f"YAML syntax error: {message}",
                Pos(source, line + 1, col + 1),
                (f"the YAML parser said: {raw}",),
            ) from None
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and problem.startswith("but "):  # ruamel splits one sentence in two
            problem = f"{exc.context}, {problem}"
        if (
            exc.context_mark is not None
            and mark is not None
            and mark.line >= len(text.splitlines())
        ):
            # the problem is the end of the file (an unclosed bracket
            # or quote): point where it opened
            mark, problem = (
                exc.context_mark,
                f"{problem} ({exc.context})" if exc.context else problem,
            )
        pos = Pos(source, mark.line + 1, mark.column + 1) if mark else Pos(source, 1, 1)
        lines = text.splitlines()
        if lines and pos.line > len(lines):  # at the end of the file: point just past its last line
            pos = Pos(source, len(lines), len(lines[-1]) + 1)
        raise SpecError(f"YAML syntax error: {problem}", pos) from None
    except (YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise SpecError(f"YAML error: {exc}".splitlines()[0], Pos(source, 1, 1)) from None
    except Exception as exc:  # ruamel's own code trips on some odd documents (`<<: !!set {a}`)
        raise SpecError(
            f"YAML error: the parser failed on this document ({type(exc).__name__})",
            Pos(source, 1, 1),
        ) from None
    if tree is None:
        raise SpecError("spec is empty", Pos(source, 1, 1))
    if (
        _expanded_size(tree, {}, max_nodes, 0) > max_nodes
    ):  # aliases: sized in O(distinct nodes), not copied
        where = _overflow_pos(tree, max_nodes, source, Pos(source, 1, 1))
        raise SpecError(
            f"spec expands to more than {max_nodes:,} YAML nodes (an alias bomb?)", where
        )
    budget = [max_nodes, max_nodes]  # [left, limit]
    data = _convert(tree, source, budget, depth=0)
    if not isinstance(data, LDict):
        raise SpecError(
            "a spec must be a YAML mapping (keys such as input:, layers:)", Pos(source, 1, 1)
        )
    return Document(data, source)


_FLOW_CLOSE = re.compile(r"expected ',' or '([\]}])', but got (.*)$")


# A family spec (resnet.yaml's five depths) is read once per variant, and the zoo once per name:
# parsing is most of a compile, so the last trees parsed are kept. Only successful parses of small
# texts (the zoo's largest is 7 KB; a 16 KB tree takes at most about 2 MB, so the cache at most
# about 128 MB); `_convert` copies a tree into fresh containers, so a cached tree is never changed.
_PARSE_CACHE_TEXT = 16_384


@functools.lru_cache(maxsize=64)
def _parse_small(text: str, max_nodes: int) -> Any:
    return _parse_uncached(text, max_nodes)


def clear_parse_cache() -> None:
    """Forget the kept trees: the next load of any text parses it anew."""
    _parse_small.cache_clear()


def _parse(text: str, max_nodes: int) -> Any:
    """ruamel's round-trip tree of `text` (positions kept), or its exception."""
    if len(text) <= _PARSE_CACHE_TEXT:
        return _parse_small(text, max_nodes)
    return _parse_uncached(text, max_nodes)


def _parse_uncached(text: str, max_nodes: int) -> Any:
    from ruamel.yaml.error import ReusedAnchorWarning

    with warnings.catch_warnings():  # YAML lets a later anchor reuse a name; aliases read the last
        warnings.simplefilter("ignore", ReusedAnchorWarning)
        return _counting_yaml(max_nodes).load(text)


def yaml_advice(exc: MarkedYAMLError, lines: list[str]) -> tuple[str, tuple[int, int]] | None:
    """ruamel's message for the usual YAML slips as plain advice, at the place to fix (0-based
    line and column): tabs, lines indented unlike their siblings, unclosed brackets and quotes,
    unquoted `${...}` inside brackets, a second `: ` on a line, duplicate keys. None: no advice."""
    problem, context = exc.problem or "", exc.context or ""
    at, opened = exc.problem_mark, exc.context_mark
    if at is None:
        return None
    here = (at.line, at.column)
    if "'\\t'" in problem:
        return "a tab character; YAML indents with spaces only: replace the tab with spaces", here
    if problem.startswith("expected <block end>"):
        where = (
            f"line {opened.line + 1}, column {opened.column + 1}"
            if opened is not None
            else "the lines above"
        )
        kind = (
            "list" if "collection" in context else "mapping"
        )  # ruamel calls a block sequence a collection
        return (
            f"this line is indented differently from the rest of its {kind} (which "
            f"starts at {where}); YAML nests by indentation: align it with its siblings"
        ), here
    closing = _FLOW_CLOSE.match(problem)
    if closing and opened is not None:
        closer, got = closing.group(1), closing.group(2)
        line = lines[at.line] if at.line < len(lines) else ""
        if got == "'{'" and at.column > 0 and line[at.column - 1 : at.column] == "$":
            return 'an expression inside [...] or {...} must be quoted: write "${...}"', (
                at.line,
                at.column - 1,
            )
        opener = "[" if closer == "]" else "{"
        if got == "'<stream end>'" or at.line != opened.line:
            what = "list" if opener == "[" else "mapping"
            return f"this '{opener}' is never closed: add '{closer}' where the {what} ends", (
                opened.line,
                opened.column,
            )
        return f"expected ',' or '{closer}' here: separate the entries with ', '", here
    if "quoted scalar" in context and opened is not None:
        return "this quote is never closed: add the closing quote", (opened.line, opened.column)
    if problem.startswith("mapping values are not allowed"):
        return (
            "unexpected ': ' here: a nested mapping goes in braces on "
            "one line ('conv: {out: 4, kernel: 3}') or on its own, "
            "further indented lines; a space after ':' ends a key"
        ), here
    duplicate = re.match(r'found duplicate key "([^"]*)"', problem)
    if duplicate:
        key = duplicate.group(1)
        first = next(
            (
                n
                for n in range(opened.line if opened else 0, at.line)
                if lines[n][: at.column].strip() in ("", "-")
                and lines[n][at.column :].startswith(f"{key}:")
            ),
            None,
        )
        also = f" (first at line {first + 1})" if first is not None else ""
        return f"key '{key}' appears twice in this mapping{also}; each key may appear once", here
    return None


def load_file(path: str | Path) -> Document:
    """Read and parse a spec file, refusing oversized files before reading them whole."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(
                f"spec file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
                Pos(Source(str(path), ""), 1, 1),
            )
        data = p.read_bytes()
        text = data.decode("utf-8")
    except SpecError:
        raise
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")  # point at the first bad byte
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
        where = Pos(Source(str(path), data.decode("utf-8", "replace")), line, col)
        raise SpecError(f"not a UTF-8 text file (byte 0x{data[exc.start]:02x})", where) from None
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_text(text, str(path))


MAX_DEPTH = 200
MAX_NUMBER_CHARS = (
    100  # longest plain number literal: Python refuses ints past 4,300 digits, floats overflow
)
_NUMBER = re.compile(
    r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?|[-+]?0[xXoObB][0-9a-fA-F_]+"
)


class _NodeLimit(Exception):
    """Raised by the composer when a document has more nodes than
    the budget (before any is built)."""

    def __init__(self, line: int, column: int, message: str = "") -> None:
        super().__init__(line, column)
        self.line, self.column, self.message = line, column, message


_LOADER: list[Callable[[int], YAML]] = []


def _counting_yaml(max_nodes: int) -> YAML:
    """ruamel's pure round-trip loader whose Composer counts nodes (aliases once) against the
    loader's `archc_nodes_left`: a huge flat list stops early, bounded."""
    if not _LOADER:
        from ruamel.yaml import YAML
        from ruamel.yaml.composer import Composer

        class CountingComposer(Composer):
            def compose_node(self, parent: Any, index: Any) -> Any:
                self.loader.archc_nodes_left -= 1
                if self.loader.archc_nodes_left < 0:
                    mark = self.parser.peek_event().start_mark
                    raise _NodeLimit(mark.line, mark.column)
                event = self.parser.peek_event()
                value = getattr(event, "value", None)
                if (
                    isinstance(value, str)
                    and len(value) > MAX_NUMBER_CHARS
                    and getattr(event, "style", "'") is None
                    and _NUMBER.fullmatch(value)
                ):
                    mark = event.start_mark
                    raise _NodeLimit(
                        mark.line,
                        mark.column,
                        f"number literal of {len(value):,} "
                        f"characters; the limit is {MAX_NUMBER_CHARS}",
                    )
                return super().compose_node(parent, index)

        class CountingYAML(YAML):
            def __init__(self, max_nodes: int) -> None:
                super().__init__(typ="rt", pure=True)
                self.Composer = CountingComposer
                self.max_depth = MAX_DEPTH
                self.archc_nodes_left = max_nodes

        _LOADER.append(CountingYAML)
    return _LOADER[0](max_nodes)


def _children(node: object, source: Source) -> list[tuple[object, Pos | None]]:
    """A parsed container's children in document order, with their
    positions (as `_convert` sees them)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        return [
            (node[k], _safe_lc(node.lc.value, k, source) or _safe_lc(node.lc.key, k, source))
            for k in node
        ]
    if isinstance(node, CommentedSeq):
        return [(item, _safe_lc(node.lc.item, i, source)) for i, item in enumerate(node)]
    return []


def _expanded_size(node: object, memo: dict[int, int], cap: int, depth: int) -> int:
    """Nodes of the tree with every alias expanded, counted once per
    distinct container (stops past cap)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not isinstance(node, (CommentedMap, CommentedSeq)) or depth > MAX_DEPTH:
        return 1
    key = id(node)
    if key not in memo:
        total = 1
        for child in (node[k] for k in node) if isinstance(node, CommentedMap) else node:
            total += _expanded_size(child, memo, cap, depth + 1)
            if total > cap:
                break
        memo[key] = total
    return memo[key]


def _overflow_pos(node: object, left: int, source: Source, pos: Pos) -> Pos:
    """Where converting in document order would run out of budget (the
    node `_convert` would report)."""
    memo: dict[int, int] = {}
    while True:
        left -= 1
        if left < 0:
            return pos
        for child, cpos in _children(node, source):
            size = _expanded_size(child, memo, left, 0)
            if size > left:
                node, pos = child, cpos or pos
                break
            left -= size
        else:
            return pos


def _mark(source: Source, lc: Sequence[int] | None) -> Pos | None:
    """A ruamel (line, col) as a Pos; None past the last line (a null
    value at the end of the file)."""
    if not lc or lc[0] >= _line_count(source.text):
        return None
    return Pos(source, lc[0] + 1, lc[1] + 1)


@functools.lru_cache(maxsize=64)
def _line_count(text: str) -> int:
    return len(text.splitlines())


def _tag_of(node: object) -> str | None:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", tag)
    return value if isinstance(value, str) or value is None else str(value)


def _convert(
    node: Any, source: Source, budget: list[int], depth: int, pos: Pos | None = None
) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(
            f"spec expands to more than {budget[1]:,} YAML nodes (an alias bomb?)",
            pos or Pos(source, 1, 1),
        )
    if depth > MAX_DEPTH:
        raise SpecError(f"YAML nesting deeper than {MAX_DEPTH} levels", pos or Pos(source, 1, 1))
    tag = _tag_of(node)
    if isinstance(node, TaggedScalar) and tag == "tag:yaml.org,2002:str":
        return str(node.value)  # `!!str 12`: ruamel keeps only this standard tag as a wrapper
    if tag not in _SAFE_TAGS or isinstance(node, TaggedScalar):
        raise SpecError(
            f"YAML tag '{tag}' is not allowed in a spec (specs hold data, never objects)",
            pos or Pos(source, 1, 1),
        )
    if isinstance(node, CommentedMap):
        out = LDict()
        out.pos = _mark(source, (node.lc.line, node.lc.col))
        out.key_pos, out.value_pos = {}, {}
        for key in node:
            kpos = _safe_lc(node.lc.key, key, source) or out.pos
            vpos = _safe_lc(node.lc.value, key, source) or kpos
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise SpecError("mapping keys must be plain scalars", kpos)
            skey = (
                key
                if isinstance(key, str)
                else str(key).lower()
                if isinstance(key, bool)
                else str(key)
            )
            out.key_pos[skey] = kpos
            out.value_pos[skey] = vpos
            out[skey] = _convert(node[key], source, budget, depth + 1, vpos)
        return out
    if isinstance(node, CommentedSeq):
        out_l = LList()
        out_l.pos = _mark(source, (node.lc.line, node.lc.col))
        out_l.item_pos = []
        for i, item in enumerate(node):
            ipos = _safe_lc(node.lc.item, i, source) or out_l.pos
            out_l.item_pos.append(ipos)
            out_l.append(_convert(item, source, budget, depth + 1, ipos))
        return out_l
    if node is None or isinstance(node, (bool, int, float, str)):
        return _plain_scalar(node)
    raise SpecError(
        f"unsupported YAML value of type {type(node).__name__}", pos or Pos(source, 1, 1)
    )


def _plain_scalar(value: Any) -> Any:
    """ruamel's scalar subclasses (ScalarFloat, LiteralScalarString...) -> builtin types."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _safe_lc(getter: Any, key: Any, source: Source) -> Pos | None:
    try:
        return _mark(source, getter(key))
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
