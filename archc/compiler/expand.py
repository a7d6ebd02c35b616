"""Stage 3, expand: blocks, repeats, branches, references and parameters -> the IR graph.

Expansion walks the layer lists once, in order. Each node's shape is inferred (stage 4, `infer`)
as soon as it is created, so later expressions can read the shape flowing into them (`C`, `H`,
`W`, `shape`) and a block can decide, say, whether its shortcut needs a projection.

Naming follows nn.Sequential: every child module of a namespace takes the next index unless it
has a `name:`; a named `seq` or a block call opens a child namespace; an unnamed branch list
stays in its parent's namespace (so ResNet's conv1/bn1/... sit beside `downsample`).
"""

from __future__ import annotations

import difflib
import re
from collections import ChainMap
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from archc import ops
from archc.compiler import expr
from archc.compiler.infer import ShapeError, make_node, validate_args
from archc.compiler.ir import INPUT, Graph, Head, Node, ScopeInfo
from archc.compiler.loader import LDict, LList, key_position, position_of
from archc.compiler.names import name_problem
from archc.compiler.suggest import PYTORCH_ARGS, suggest_op
from archc.compiler.validate import LoadedSpec, render, resolve_params
from archc.errors import MAX_ERRORS, Pos, SpecError, did_you_mean
from archc.ops.base import OpError, Shape, fmt_shape

META_KEYS = ("name", "from", "when", "repeat", "head", "then", "doc", "checkpoint")
SEQ = "seq"
BRANCHES = (
    "branches"  # a merge's branches beside its arguments: `concat: {dim: 1, branches: [...]}`
)
NAME_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)$")


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile or mistaken spec from exhausting the machine."""

    max_nodes: int = 20_000
    max_repeat: int = 4_096
    max_depth: int = 48

    @property
    def max_steps(self) -> int:
        """Items visited while expanding (dropped `when: false` items and empty lists included):
        work that leaves no node must be bounded too. Scales with --max-nodes.

        The zoo visits at most 2.4 items and lists per node (MobileNetV3) and a tree of blocks
        that each call two others about 5, so 6 per node leaves a spec at the node cap room; a
        visit that makes no node costs about 3 us, so a spec that spends the whole budget on empty
        repeats takes about 0.35 CPU-seconds, not much more than one at the node cap."""
        return 6 * self.max_nodes


MAX_NAME = 128  # characters in one layer, seq or block name
MAX_ID_CHARS = 16_000_000  # characters in all generated node and module paths together


@dataclass
class Namespace:
    """Where child modules are named: one per nn.Module container."""

    path: str  # dotted prefix, "" at the top
    counter: int = 0
    modules: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str) -> str:
        return f"{self.path}{name}"


@dataclass
class Scope:
    """Lexical context of a layer list: its namespace, variables and visible node names."""

    ns: Namespace
    env: ChainMap[str, Any]
    refs: ChainMap[str, str]
    declared: ChainMap[str, Pos | None]
    input_id: str
    stack: tuple[str, ...]
    depth: int


@dataclass
class Value:
    """The tensor flowing along a list: which node made it.

    `tainted`: an earlier error changed what flows here, so a shape mismatch downstream may be only
    its consequence and is not reported.
    """

    node: str
    shape: Shape
    tainted: bool = False
    # the outputs of a split or chunk (`node` is then the split's own id, which is no node of the
    # graph): a merge reads them all, any other item must pick one (`from: NAME.1`)
    pieces: tuple[Value, ...] = ()


class LimitError(SpecError):
    """A resource limit: expansion stops at once instead of reporting further problems."""


@dataclass(frozen=True)
class Frame:
    """One level of the call-site chain an error inside a block or repeat is reported with; its
    text is made only when an error needs it (a repeat pushes one frame per repetition)."""

    what: str  # "block" or "repeat"
    label: str  # the block's name, or the repeat variable
    pos: Pos | None
    detail: Any  # the block call's arguments (a mapping), or the repeat index

    def text(self) -> str:
        if self.what == "repeat":
            return f"repeat index {int(self.detail)}"
        return ", ".join(f"{k}={_show(v)}" for k, v in self.detail.items())


class Expander:
    def __init__(self, spec: LoadedSpec, limits: Limits) -> None:
        self.spec = spec
        self.limits = limits
        data = spec.document.data
        self.blocks: LDict = data.get("blocks") or LDict()
        self.graph = Graph(
            name=spec.name, input_shape=spec.input_shape, params_used=dict(spec.params)
        )
        self.ids: set[str] = {INPUT}
        self.errors: list[SpecError] = []
        self.frames: list[Frame] = []
        self.annotated: set[int] = set()  # ids of errors that already carry their call-site chain
        self.tainted: set[str] = set()  # nodes a failed item's name was left pointing to
        self.head_order: dict[
            str, int
        ] = {}  # head -> its place among the outputs after the main one
        self.steps = 0  # items and lists visited, see Limits.max_steps
        self.max_steps = limits.max_steps
        self.id_chars = 0  # characters of generated paths, see MAX_ID_CHARS
        self.suffixes: dict[str, int] = {}  # next free ~N of each repeated node id
        self.pieces: dict[str, tuple[str, ...]] = {}  # a split's id -> its outputs' node ids

    def run(self) -> Graph:
        data = self.spec.document.data
        scope = Scope(
            ns=Namespace(""),
            env=ChainMap(dict(self.spec.params)),
            refs=ChainMap({}),
            declared=ChainMap({}),
            input_id=INPUT,
            stack=(),
            depth=0,
        )
        self.graph.input_layout = self.input_layout()
        with expr.work_budget():
            out = self.seq(data["layers"], scope, Value(INPUT, self.spec.input_shape))
        if self.errors:
            raise SpecError.several(self.errors)
        if out.node == INPUT:
            raise SpecError("the network has no layers", position_of(data, "layers"))
        if out.pieces:
            raise SpecError(
                f"the network ends in {self.several(out)}; its output is one tensor: merge them "
                f"(concat, add) or read one with 'from:'",
                position_of(data, "layers"),
            )
        self.graph.output = out.node
        self.graph.heads.sort(
            key=lambda h: self.head_order[h.name]
        )  # stable: declaration order otherwise
        return self.graph

    def input_layout(self) -> tuple[str, ...] | None:
        """The spec's `input_layout`, one letter per input dimension, each once; a token sequence's
        features D are its channels C (`[L, D]` is laid out as archc's L×D)."""
        letters = self.spec.model.input_layout
        if letters is None:
            return None
        pos = position_of(self.spec.document.data, "input_layout")
        if len(letters) != len(self.spec.input_shape) or len(set(letters)) != len(letters):
            raise SpecError(
                f"input_layout {letters} must name each of the {len(self.spec.input_shape)} input "
                f"dimensions once, e.g. [C, H, W], [H, W, C] or [L, D]",
                pos,
            )
        if "L" in letters:
            if "C" in letters or len(letters) != 2:
                raise SpecError(
                    f"input_layout {letters}: a sequence is [L, D] (tokens) or [D, L] (channels "
                    "along positions)",
                    pos,
                )
            return tuple("C" if a == "D" else a for a in letters)
        return tuple(letters)

    # lists and items ---------------------------------------------------------------------------
    def step(self, pos: Pos | None) -> None:
        """Count one visit; every item and list counts, whether or not it makes a node."""
        self.steps += 1
        if self.steps > self.max_steps:
            raise LimitError(
                f"expanding the spec visits more than {self.max_steps:,} items and lists "
                "(repeats of empty or dropped items count too; --max-nodes raises this)",
                pos,
            )

    def charge_path(self, path: str, pos: Pos | None) -> None:
        self.id_chars += len(path)
        if self.id_chars > MAX_ID_CHARS:
            raise LimitError(
                f"the generated layer names add up to more than {MAX_ID_CHARS:,} characters", pos
            )

    def seq(self, items: Any, scope: Scope, cur: Value, pos: Pos | None = None) -> Value:
        self.step(getattr(items, "pos", None) or pos)
        if not isinstance(items, LList):
            raise SpecError(
                f"expected a list of layers, got {type(items).__name__}",
                getattr(items, "pos", None) or pos,
            )
        declared: dict[str, Pos | None] = {}
        for i, item in enumerate(items):
            if (
                isinstance(item, LDict)
                and isinstance(item.get("name"), str)
                and "$" not in item["name"]
            ):
                declared[item["name"]] = position_of(item, "name")
            elif item is None:
                raise SpecError(
                    "empty list item: write an op name such as '- relu'", position_of(items, i)
                )
        scope = Scope(
            scope.ns,
            scope.env,
            scope.refs,
            scope.declared.new_child(declared),
            scope.input_id,
            scope.stack,
            scope.depth,
        )
        for i, item in enumerate(items):
            try:
                cur = self.item(item, position_of(items, i), scope, cur)
            except SpecError as exc:
                cur = self.recover(exc, item, scope, cur)
        return cur

    def recover(self, exc: SpecError, item: Any, scope: Scope, cur: Value) -> Value:
        """Record an item's error and go on from its input, like a compiler, to report every
        independent error at once; a shape mismatch fed by an earlier error is not reported."""
        self.annotate(exc)
        if isinstance(exc, LimitError) or exc.truncated:
            raise exc
        if not (isinstance(exc, ShapeError) and exc.cascade):
            for diag in exc.diagnostics:  # an op's several bad arguments are several errors
                seen = {
                    (str(e.pos), e.message) for e in self.errors
                }  # a block's mistake once, not per call
                if (str(diag.pos), diag.message) not in seen:
                    self.errors.append(diag)
                if len(self.errors) >= MAX_ERRORS:
                    raise SpecError.several(self.errors, truncated=True)
        flow = (
            cur.pieces[0] if cur.pieces else cur
        )  # a node of the graph, whatever the failed item read
        name = item.get("name") if isinstance(item, LDict) else None
        if (
            isinstance(name, str)
            and "$" not in name
            and name_problem(name, False) is None
            and name not in scope.refs.maps[0]
        ):
            scope.refs.maps[0][name] = (
                flow.node
            )  # later references to it are not errors of their own
            self.tainted.add(flow.node)
        return Value(flow.node, flow.shape, tainted=True)

    def annotate(self, exc: SpecError) -> None:
        """Add the call-site chain to an error, once: where it was
        raised, the frames are still current."""
        if id(exc) not in self.annotated:
            self.annotated.add(id(exc))
            notes = tuple(self.call_notes())
            for diag in exc.diagnostics:
                diag.notes = (*diag.notes, *notes)

    def call_notes(self) -> list[str]:
        """'in block 'B' called at x.yaml:40:7 with planes=64, repeat index 2', innermost first."""
        notes: list[str] = []
        frames = self.frames
        k = len(frames) - 1
        while k >= 0:
            frame = frames[k]
            if frame.what == "block":
                text = f"in block '{frame.label}' called at {frame.pos or 'the spec'}"
                if frame.detail:
                    text += f" with {frame.text()}"
                if k > 0 and frames[k - 1].what == "repeat" and frames[k - 1].pos == frame.pos:
                    k -= 1
                    text += f", {frames[k].text()}"
                notes.append(text)
            else:
                notes.append(f"in {frame.text()} of the item at {frame.pos or 'the spec'}")
            k -= 1
        return notes

    def item(self, raw: Any, pos: Pos | None, scope: Scope, cur: Value) -> Value:
        self.step(pos)
        kind, body, meta, kpos = self.split(raw, pos, scope)
        if "when" in meta and not self.when_holds(meta, raw, scope, cur):
            return cur
        if "repeat" not in meta:
            return self.single(kind, body, meta, raw, kpos, scope, cur)
        flow = self.flow_in(meta, raw, scope, cur)
        env = self.env_for(scope, flow)
        if isinstance(meta.get("name"), str) and "$" not in meta["name"] and "head" not in meta:
            # a literal name names the repetitions together: one module (an nn.Sequential), its
            # repetitions indexed 0..n-1 inside, as torchvision's `layer1 = nn.Sequential(*blocks)`
            name = self.name_of(meta, raw, env, top_level=scope.ns.path == "")
            assert name is not None
            container = self.child_scope(
                scope,
                name,
                kpos,
                SEQ,
                None,
                {},
                scope.env,
                scope.refs.new_child({}),
                flow.node,
                scope.stack,
            )
            container.declared = scope.declared
            out = self.repetitions(
                kind,
                body,
                {k: v for k, v in meta.items() if k != "name"},
                raw,
                pos,
                kpos,
                container,
                cur,
                env,
            )
            scope.refs.maps[0][name] = out.node
            return out
        return self.repetitions(kind, body, meta, raw, pos, kpos, scope, cur, env)

    def repetitions(
        self,
        kind: str,
        body: Any,
        meta: dict[str, Any],
        raw: Any,
        pos: Pos | None,
        kpos: Pos | None,
        scope: Scope,
        cur: Value,
        env: Any,
    ) -> Value:
        """The item applied once per repetition, each on the previous one's output."""
        var = meta["repeat"].get("var", "i") if isinstance(meta["repeat"], LDict) else "i"
        for bound in self.repeat_spec(meta["repeat"], raw, env):
            self.step(pos)
            inner = Scope(
                scope.ns,
                scope.env.new_child(bound),
                scope.refs,
                scope.declared,
                scope.input_id,
                scope.stack,
                scope.depth,
            )
            index = bound[var] if isinstance(var, str) and var in bound else 0
            self.frames.append(Frame("repeat", var, kpos, index))
            try:
                cur = self.single(kind, body, meta, raw, kpos, inner, cur)
            except SpecError as exc:
                self.annotate(exc)
                raise
            finally:
                self.frames.pop()
        return cur

    def flow_in(self, meta: dict[str, Any], raw: Any, scope: Scope, cur: Value) -> Value:
        """What an item reads: the node its `from:` names first, else the previous item's output.

        The shape variables (`C`, `H`, `W`, `L`, `shape`) of an item are this value's shape.
        """
        return self.resolve(meta["from"], raw, scope)[0] if "from" in meta else cur

    def when_holds(self, meta: dict[str, Any], raw: Any, scope: Scope, cur: Value) -> bool:
        """Evaluate `when:` over the shape the item reads (its `from:` node's, when it has one).

        An unresolvable `from:` is reported only when the item is kept: a dropped item may name a
        node that was dropped too (a projection shortcut read by a merge that is also dropped).
        """
        wpos = position_of(raw, "when")
        try:
            flow = self.flow_in(meta, raw, scope, cur)
        except SpecError:
            try:
                # without the shape variables: a condition that reads them cannot drop the item here
                dropped = render(meta["when"], scope.env, wpos) is False
            except SpecError:
                dropped = False
            if dropped:
                return False
            raise
        cond = render(meta["when"], self.env_for(scope, flow), wpos)
        if not isinstance(cond, bool):
            raise SpecError(f"'when' must be true or false, got {cond!r}", wpos)
        return cond

    def split(
        self, raw: Any, pos: Pos | None, scope: Scope
    ) -> tuple[str, Any, dict[str, Any], Pos | None]:
        """An item -> (kind, body, meta keys, position of the kind)."""
        if isinstance(raw, str):
            kind = render(raw, self.env_for(scope, None), pos) if "$" in raw else raw
            if not isinstance(kind, str):
                raise SpecError(f"expected an op or block name, got {kind!r}", pos)
            self.check_kind(kind, pos)
            return kind, None, {}, pos
        if not isinstance(raw, LDict):
            raise SpecError(
                "a layer is an op name ('- relu') or a mapping ('- conv: "
                f"{{out: 64, kernel: 3}}'), got {type(raw).__name__}",
                pos,
            )
        meta = {k: v for k, v in raw.items() if k in META_KEYS}
        kinds = [k for k in raw if k not in META_KEYS]
        if not kinds:
            raise SpecError(f"layer has no op (keys: {', '.join(raw)})", raw.pos or pos)
        for k in kinds:
            if not self.is_kind(k):
                raise SpecError(
                    "unknown op, block or key "
                    f"'{k}'{self.misplaced_argument(k, kinds, raw) or self.hint(k, META_KEYS)}",
                    key_position(raw, k),
                )
        if len(kinds) > 1:
            raise SpecError(
                f"one op per list item, found {', '.join(kinds)}; put each on its own '- ' line",
                key_position(raw, kinds[1]),
            )
        return kinds[0], raw[kinds[0]], meta, key_position(raw, kinds[0])

    def is_kind(self, name: str) -> bool:
        return name == SEQ or name in self.blocks or ops.get(name) is not None

    def check_kind(self, name: str, pos: Pos | None) -> None:
        if not self.is_kind(name):
            raise SpecError(f"unknown op or block '{name}'{self.hint(name)}", pos)

    def hint(self, name: str, keys: tuple[str, ...] = ()) -> str:
        """Did-you-mean for an op or block name that never steers to
        a different function silently."""
        return suggest_op(name, ops.REGISTRY, [*self.blocks, SEQ, *keys])

    def misplaced_argument(self, key: str, kinds: list[str], raw: LDict) -> str:
        """' (conv takes 'kernel': put it inside conv's mapping)' when `key`
        is an argument of the item's op."""
        op = next((ops.get(k) for k in kinds if ops.get(k) is not None), None)
        if op is None:
            return ""
        fields = list(op.Args.model_fields)
        named = (
            key
            if key in fields
            else PYTORCH_ARGS.get(key)
            if PYTORCH_ARGS.get(key) in fields
            else None
        )
        if named is None:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.75)
            named = close[0] if close else None
        if named is None:
            return ""
        kind = next(k for k in kinds if ops.get(k) is op)
        if op.multi_input and isinstance(raw.get(kind), LList):  # the branch form
            return (
                f" ({op.name} takes '{named}': write it inside {op.name}'s mapping beside the "
                f"branches, '{op.name}: {{{named}: ..., {BRANCHES}: [...]}}')"
            )
        return (
            f" ({op.name} takes '{named}': write it inside "
            f"{op.name}'s mapping, '{op.name}: {{{named}: ...}}')"
        )

    def env_for(self, scope: Scope, cur: Value | None) -> ChainMap[str, Any]:
        return scope.env if cur is None else self.with_shape(scope.env, cur)

    @staticmethod
    def with_shape(env: ChainMap[str, Any], cur: Value) -> ChainMap[str, Any]:
        """`env` plus the shape variables of the value an item reads."""
        shape = cur.shape
        dyn: dict[str, Any] = {"C": shape[0], "shape": list(shape)}
        if len(shape) >= 2:
            dyn["H" if len(shape) >= 3 else "L"] = shape[1]
        if len(shape) >= 3:
            dyn["W"] = shape[-1]
        return env.new_child(dyn)

    def repeat_spec(self, raw: Any, item: Any, env: Any) -> Iterable[dict[str, Any]]:
        """The variables of each repetition: `repeat: 3`, `repeat: {count: 3, var: j}`, or one per
        element of a list (`repeat: $stages`, `repeat: {each: $stages, as: stage, var: j}`) or entry
        of a mapping (the same, plus `key`, the entry's name)."""
        pos = position_of(item, "repeat")
        var, element = "i", "item"
        if isinstance(raw, LDict):
            allowed = ("each", "as", "var") if "each" in raw else ("count", "var")
            unknown = [k for k in raw if k not in allowed]
            if unknown:
                known = "count and var, or each, as and var"
                raise SpecError(
                    f"unknown key '{unknown[0]}' in "
                    f"repeat{did_you_mean(unknown[0], allowed)} (use {known})",
                    key_position(raw, unknown[0]),
                )
            var = self.repeat_name(raw, "var", "i")
            element = self.repeat_name(raw, "as", "item")
            if "each" in raw:
                pos = position_of(raw, "each")
            raw = raw.get("each", raw.get("count"))
        value = render(raw, env, pos)
        if isinstance(value, dict | list):  # a table keyed by name also gives each entry's `key`
            table = isinstance(value, dict)
            entries = list(value.items() if isinstance(value, dict) else enumerate(value))
            kind, things = ("mapping", "entries") if table else ("list", "elements")
            if not entries:
                raise SpecError(f"repeat over an empty {kind}; to drop the item, use 'when:'", pos)
            if len(entries) > self.limits.max_repeat:
                raise SpecError(
                    f"repeat over {len(entries)} {things} exceeds the "
                    f"limit of {self.limits.max_repeat} (--max-repeat)",
                    pos,
                )
            return [
                {**self.element_vars(v, element, var, i), **({"key": k} if table else {})}
                for i, (k, v) in enumerate(entries)
            ]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            hint = (
                "; to drop the item, write 'when: false' (or 'when: ${n > 0}')"
                if value == 0
                else ""
            )
            raise SpecError(
                f"repeat count must be a positive integer or a list, got {value!r}{hint}", pos
            )
        if value > self.limits.max_repeat:
            raise SpecError(
                f"repeat count {value} exceeds the limit of "
                f"{self.limits.max_repeat} (--max-repeat)",
                pos,
            )
        return (
            {var: i} for i in range(value)
        )  # lazily: --max-repeat may be astronomical, the node cap is not

    @staticmethod
    def repeat_name(raw: LDict, key: str, default: str) -> str:
        name = raw.get(key, default)
        if not isinstance(name, str) or not NAME_RE.match(name) or name[0].isdigit():
            raise SpecError(
                f"repeat {key} must be an identifier, got {name!r}", position_of(raw, key)
            )
        return name

    @staticmethod
    def element_vars(elem: Any, element: str, var: str, i: int) -> dict[str, Any]:
        """One repetition over a list: the index, the element, and a
        mapping element's keys as variables."""
        bound: dict[str, Any] = {}
        if isinstance(elem, dict):
            bound.update(
                {
                    k: v
                    for k, v in elem.items()
                    if isinstance(k, str) and NAME_RE.match(k) and not k[0].isdigit()
                }
            )
        bound[element] = elem
        bound[var] = i
        return bound

    # one item ------------------------------------------------------------------------------------
    def single(
        self,
        kind: str,
        body: Any,
        meta: dict[str, Any],
        raw: Any,
        kpos: Pos | None,
        scope: Scope,
        cur: Value,
    ) -> Value:
        inputs = self.resolve(meta["from"], raw, scope) if "from" in meta else [cur]
        env = self.env_for(scope, inputs[0])  # the shape variables describe what the item reads
        name = self.name_of(meta, raw, env, top_level=scope.ns.path == "")
        checkpoint = self.checkpoint_of(meta, raw, env, kind)
        if kind == SEQ:
            out = self.call_seq(
                body, name, kpos, scope, self.single_input(inputs, kind, kpos), checkpoint
            )
        elif kind in self.blocks:
            out = self.call_block(
                kind,
                body,
                name,
                kpos,
                scope,
                self.single_input(inputs, kind, kpos),
                env,
                checkpoint,
            )
        else:
            op = ops.get(kind)
            assert op is not None
            if op.multi_input and (
                isinstance(body, LList) or (isinstance(body, LDict) and BRANCHES in body)
            ):
                out = self.branches(
                    kind, body, name, kpos, scope, self.single_input(inputs, kind, kpos), env
                )
            elif op.multi_output:
                out = self.split_nodes(
                    kind, body, name, kpos, scope, self.single_input(inputs, kind, kpos), env
                )
            else:
                if op.multi_input:  # a merge reads every output of a split it is given
                    inputs = [p for v in inputs for p in (v.pieces or (v,))]
                else:
                    inputs = [self.single_input(inputs, kind, kpos)]
                out = self.op_node(kind, body, name, kpos, scope, inputs, env)
        if "then" in meta:
            then = meta["then"]
            items = then if isinstance(then, LList) else [then]
            for j, sub in enumerate(items):
                out = self.item(
                    sub,
                    position_of(then, j) if isinstance(then, LList) else position_of(raw, "then"),
                    scope,
                    out,
                )
        if name is not None:
            scope.refs.maps[0][name] = out.node
        if "head" in meta:
            self.add_head(meta["head"], name, raw, out)
            return cur  # a head is a side branch: the flow continues from the item before it
        return out

    def checkpoint_of(self, meta: dict[str, Any], raw: Any, env: Any, kind: str) -> bool:
        """`checkpoint: true` recomputes a block call's or seq's activations in backward."""
        if "checkpoint" not in meta:
            return False
        pos = position_of(raw, "checkpoint")
        value = render(meta["checkpoint"], env, pos)
        if not isinstance(value, bool):
            raise SpecError(f"'checkpoint' must be true or false, got {value!r}", pos)
        inline = (
            kind in self.blocks
            and isinstance(self.blocks[kind], LDict)
            and self.blocks[kind].get("inline", False)
        )
        if value and ((kind != SEQ and kind not in self.blocks) or inline):
            raise SpecError(
                "'checkpoint' applies to a block call or a "
                f"seq (a module of its own), not to '{kind}'",
                pos,
            )
        return value

    def single_input(self, inputs: list[Value], kind: str, pos: Pos | None) -> Value:
        if len(inputs) != 1:
            raise SpecError(f"'{kind}' takes one input, but 'from' names {len(inputs)}", pos)
        if inputs[0].pieces:
            if inputs[
                0
            ].tainted:  # after an earlier error: go on from a real node, say nothing more
                return inputs[0].pieces[0]
            first = self.display(inputs[0].pieces[0].node)
            raise SpecError(
                f"'{kind}' reads {self.several(inputs[0])}; pick one with 'from: {first}' "
                f"(or merge them: concat, add)",
                pos,
            )
        return inputs[0]

    def several(self, value: Value) -> str:
        """'the 2 outputs of split 's' (s.0, s.1)'."""
        names = [self.display(p.node) for p in value.pieces]
        base = self.display(value.node)
        op = self.graph.nodes[value.pieces[0].node].label.split()[0]
        outputs = "output" if len(names) == 1 else "outputs"
        return f"the {len(names)} {outputs} of {op} '{base}' ({', '.join(names)})"

    def split_nodes(
        self,
        kind: str,
        body: Any,
        name: str | None,
        pos: Pos | None,
        scope: Scope,
        cur: Value,
        env: Any,
    ) -> Value:
        """A split or chunk: one `slice` view per output, `NAME.0`,
        `NAME.1`, ... in the namespace."""
        op = ops.get(kind)
        assert op is not None
        if body is None:
            raw: dict[str, Any] = {}
        elif isinstance(body, LDict):
            raw = {k: render(v, env, position_of(body, k)) for k, v in body.items()}
        else:
            raw = {str(op.shorthand): render(body, env, pos)}
        args = validate_args(op, raw, body, pos)
        try:
            dim, bounds = op.pieces(args, cur.shape)
        except OpError as exc:
            error = ShapeError(f"{kind}: {exc}", pos)
            error.cascade = cur.tainted
            raise error from None
        base = self.unique(scope.ns.child(name or kind))
        self.ids.add(base)
        leaf = base[len(scope.ns.path) :]
        pieces = []
        for k, (start, end) in enumerate(bounds):
            cut = {"dim": dim, "start": start, "end": None if k == len(bounds) - 1 else end}
            piece = self.make(
                "slice",
                (cut, None),
                f"{leaf}.{k}",
                pos,
                scope,
                [cur],
                [f"'{self.display(cur.node)}'"],
            )
            self.graph.nodes[piece.node].label = f"{kind} dim {dim} [{start}:{end}]"
            pieces.append(piece)
        self.pieces[base] = tuple(p.node for p in pieces)
        return Value(base, pieces[0].shape, cur.tainted, tuple(pieces))

    def name_of(self, meta: dict[str, Any], raw: Any, env: Any, top_level: bool) -> str | None:
        if "name" not in meta:
            return None
        pos = position_of(raw, "name")
        name = render(meta["name"], env, pos)
        if isinstance(name, str) and len(name) > MAX_NAME:
            raise SpecError(f"name is {len(name):,} characters long; the limit is {MAX_NAME}", pos)
        problem = name_problem(name, top_level)
        if problem is not None:
            raise SpecError(problem, pos)
        return name

    def resolve(self, raw: Any, item: Any, scope: Scope) -> list[Value]:
        pos = position_of(item, "from")
        names = list(raw) if isinstance(raw, LList) else [raw]
        if not names:
            raise SpecError("'from' needs at least one node name", pos)
        out = []
        for j, name in enumerate(names):
            npos = position_of(raw, j) if isinstance(raw, LList) else pos
            if not isinstance(name, str):
                raise SpecError(
                    f"'from' takes node names, got {name!r} "
                    "(references are by name, never by index)",
                    npos,
                )
            if name == INPUT:
                node_id = scope.input_id
            elif name in scope.refs:
                node_id = scope.refs[name]
            elif isinstance(name, str) and "." in name and name.rpartition(".")[0] in scope.refs:
                out.append(self.output_of(name, scope, npos))
                continue
            elif name in scope.declared:
                where = scope.declared[name]
                at = f" (line {where.line})" if where else ""
                raise SpecError(
                    f"'{name}' is defined later{at}; 'from' must name an earlier node (no cycles)",
                    npos,
                )
            else:
                hint = did_you_mean(name, [*scope.refs, INPUT])
                outside = any(
                    node == name or node.endswith(f".{name}") for node in self.graph.nodes
                )
                if not hint and scope.stack and outside:
                    hint = (
                        f" in block '{scope.stack[-1]}': a block "
                        "body sees only its own names and 'input'"
                    )
                raise SpecError(f"unknown node '{name}'{hint}", npos)
            out.append(self.value_of(node_id))
        return out

    def value_of(self, node_id: str) -> Value:
        """The value a name refers to: a node, or the outputs of a split that starts at it."""
        tainted = node_id in self.tainted
        if node_id in self.pieces:
            pieces = tuple(self.value_of(p) for p in self.pieces[node_id])
            return Value(node_id, pieces[0].shape, tainted, pieces)
        return Value(node_id, self.graph.shape_of(node_id), tainted)

    def output_of(self, name: str, scope: Scope, pos: Pos | None) -> Value:
        """`s.1`: one output of the split or chunk named `s`."""
        base, _, index = name.rpartition(".")
        node_id = scope.refs[base]
        outputs = self.pieces.get(node_id, ())
        if node_id in self.tainted and not outputs:
            return Value(
                node_id, self.graph.shape_of(node_id), True
            )  # an earlier error's consequence
        if not outputs:
            raise SpecError(f"'{base}' has one output, not several; write 'from: {base}'", pos)
        if not (index.isdigit() and index.isascii()) or int(index) >= len(outputs):
            which = "out of range" if index.isdigit() and index.isascii() else "not an output index"
            names = ", ".join(f"{base}.{k}" for k in range(len(outputs)))
            raise SpecError(
                f"'{name}': {index!r} is {which}; '{base}' has {len(outputs)} outputs: {names}", pos
            )
        return self.value_of(outputs[int(index)])

    def add_head(self, raw: Any, name: str | None, item: Any, out: Value) -> None:
        pos = position_of(item, "head")
        if name is None:
            raise SpecError("an output head needs a name", pos)
        if out.pieces:
            raise SpecError(
                f"an output head is one tensor, but this item makes {self.several(out)}", pos
            )
        if raw is True or raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise SpecError("head is true or a mapping {loss_weight: 0.3, train_only: true}", pos)
        keys = ["loss_weight", "train_only", "order"]
        unknown = [k for k in raw if k not in keys]
        if unknown:
            raise SpecError(
                f"unknown key '{unknown[0]}' in head{did_you_mean(unknown[0], keys)}",
                key_position(raw, unknown[0]),
            )
        order = raw.get("order", len(self.graph.heads) + 1)
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            raise SpecError(
                "order must be a positive integer (1: the first "
                f"output after the main one), got {order!r}",
                position_of(raw, "order"),
            )
        weight = raw.get("loss_weight", 1.0)
        train_only = raw.get("train_only", True)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise SpecError(
                f"loss_weight must be a non-negative number, got {weight!r}",
                position_of(raw, "loss_weight"),
            )
        if not isinstance(train_only, bool):
            raise SpecError(
                f"train_only must be true or false, got {train_only!r}",
                position_of(raw, "train_only"),
            )
        if any(h.name == name for h in self.graph.heads):
            raise SpecError(f"output head '{name}' is declared twice", pos)
        self.graph.heads.append(Head(name, out.node, float(weight), train_only))
        self.head_order[name] = order

    # structures ---------------------------------------------------------------------------------
    def child_scope(
        self,
        scope: Scope,
        name: str | None,
        pos: Pos | None,
        kind: str,
        block: str | None,
        args: dict[str, Any],
        env: ChainMap[str, Any],
        refs: ChainMap[str, str],
        input_id: str,
        stack: tuple[str, ...],
        checkpoint: bool = False,
    ) -> Scope:
        label = self.claim_name(scope.ns, name, pos, None)
        path = scope.ns.child(label)
        if scope.depth + 1 > self.limits.max_depth:
            raise LimitError(
                f"blocks nest deeper than {self.limits.max_depth} levels (--max-depth)", pos
            )
        self.charge_path(path, pos)
        self.graph.scopes[path] = ScopeInfo(path, kind, block, args, pos, checkpoint)
        return Scope(
            Namespace(path + "."), env, refs, ChainMap({}), input_id, stack, scope.depth + 1
        )

    def call_seq(
        self,
        body: Any,
        name: str | None,
        pos: Pos | None,
        scope: Scope,
        cur: Value,
        checkpoint: bool = False,
    ) -> Value:
        child = self.child_scope(
            scope,
            name,
            pos,
            SEQ,
            None,
            {},
            scope.env,
            scope.refs.new_child({}),
            cur.node,
            scope.stack,
            checkpoint,
        )
        child.declared = scope.declared
        return self.seq(body, child, cur, pos)

    def call_block(
        self,
        block: str,
        body: Any,
        name: str | None,
        pos: Pos | None,
        scope: Scope,
        cur: Value,
        env: Any,
        checkpoint: bool = False,
    ) -> Value:
        if block in scope.stack:
            chain = " -> ".join([*scope.stack[scope.stack.index(block) :], block])
            raise LimitError(
                f"block '{block}' calls itself ({chain}); blocks cannot be recursive", pos
            )
        definition = self.blocks[block]
        declared = definition.get("params") or LDict()
        if not isinstance(declared, LDict):
            declared = LDict()
            declared.pos, declared.key_pos, declared.value_pos = None, {}, {}
        if body is None:
            given: dict[str, Any] = {}
        elif isinstance(body, LDict):
            given = {k: render(v, env, position_of(body, k)) for k, v in body.items()}
            for k in body:
                if k not in declared:
                    raise SpecError(
                        f"block '{block}' has no parameter '{k}'{did_you_mean(k, declared)}; "
                        f"it takes: {', '.join(declared) or 'nothing'}",
                        key_position(body, k),
                    )
        else:
            raise SpecError(f"call a block with a mapping of arguments: '- {block}: {{...}}'", pos)
        missing = [k for k, v in declared.items() if v is None and k not in given]
        if missing:
            raise SpecError(f"block '{block}' needs parameter '{missing[0]}'", pos)
        lexical = self.with_shape(ChainMap(dict(self.spec.params)), cur)  # what defaults may read
        args = resolve_params(declared, given, f"parameter of block '{block}'", body, lexical)
        block_env = ChainMap(args, dict(self.spec.params))
        stack = (*scope.stack, block)
        layers = definition["layers"]
        if definition.get("inline", False):
            inner = Scope(
                scope.ns, block_env, ChainMap({}), ChainMap({}), cur.node, stack, scope.depth + 1
            )
            if inner.depth > self.limits.max_depth:
                raise LimitError(
                    f"blocks nest deeper than {self.limits.max_depth} levels (--max-depth)", pos
                )
        else:
            inner = self.child_scope(
                scope,
                name,
                pos,
                "block",
                block,
                args,
                block_env,
                ChainMap({}),
                cur.node,
                stack,
                checkpoint,
            )
            literal = {
                k: v
                for k, v in declared.items()
                if v is not None and not (isinstance(v, str) and "$" in v)
            }
            self.graph.scopes[inner.ns.path.rstrip(".")] = replace(
                self.graph.scopes[inner.ns.path.rstrip(".")], defaults=literal
            )
        self.frames.append(Frame("block", block, pos, given))
        try:
            out = self.seq(layers, inner, cur)
        finally:
            self.frames.pop()
        if definition.get("module_order"):
            self.order_modules(definition, inner, block)
        return out

    def order_modules(self, definition: LDict, inner: Scope, block: str) -> None:
        """A block's `module_order`: each name one of its child modules, once."""
        order = definition["module_order"]
        pos = position_of(definition, "module_order")
        if definition.get("inline", False):
            raise SpecError(
                f"block '{block}' is inline: it has no modules of its own to order", pos
            )
        path = inner.ns.path.rstrip(".")
        children = {
            n.rpartition(".")[2]
            for n in [*inner.ns.modules, *self.graph.scopes]
            if n.rpartition(".")[0] == path
        }
        for j, name in enumerate(order):
            if name not in children or order.index(name) != j:
                problem = (
                    "is named twice"
                    if name in children
                    else f"is not a child module of block '{block}'"
                )
                raise SpecError(
                    f"module_order: '{name}' {problem}{did_you_mean(str(name), children)}",
                    position_of(order, j) or pos,
                )
        self.graph.scopes[path] = replace(self.graph.scopes[path], module_order=tuple(order))

    def branches(
        self,
        kind: str,
        body: LList | LDict,
        name: str | None,
        pos: Pos | None,
        scope: Scope,
        cur: Value,
        env: Any,
    ) -> Value:
        """The branch form of a merge: `concat: [b1, b2]`, or with arguments `concat: {dim: 1,
        branches: [b1, b2]}` (the same arguments as the reference form)."""
        args_raw = None
        if isinstance(body, LDict):
            args_raw = (
                {k: render(v, env, position_of(body, k)) for k, v in body.items() if k != BRANCHES},
                body,
            )
            listed = body[BRANCHES]
            if not isinstance(listed, LList) or not listed:
                raise SpecError(
                    f"'{BRANCHES}' is a list of branches, each an item or a list of items",
                    position_of(body, BRANCHES),
                )
            body = listed
        outs: list[Value] = []
        labels: list[str] = []
        for j, branch in enumerate(body):
            bpos = position_of(body, j)
            if isinstance(branch, LList):
                out = self.seq(branch, scope, cur) if branch else cur
                labels.append(f"branch {j + 1}")
            else:
                out = self.item(branch, bpos, scope, cur)
                bname = branch.get("name") if isinstance(branch, LDict) else None
                labels.append(
                    f"branch '{bname}'"
                    if isinstance(bname, str) and "$" not in bname
                    else f"branch {j + 1}"
                )
            outs.append(out)
            if out.pieces:  # a branch ending in a split gives the merge each of its outputs
                outs[-1:] = list(out.pieces)
                labels[-1:] = [f"{labels[-1]} output {k}" for k in range(len(out.pieces))]
        return self.make(kind, args_raw, name, pos, scope, outs, labels)

    def op_node(
        self,
        kind: str,
        body: Any,
        name: str | None,
        pos: Pos | None,
        scope: Scope,
        inputs: list[Value],
        env: Any,
    ) -> Value:
        op = ops.get(kind)
        assert op is not None
        if body is None:
            args: dict[str, Any] = {}
        elif isinstance(body, LDict):
            args = {k: render(v, env, position_of(body, k)) for k, v in body.items()}
        elif op.shorthand is not None:
            args = {op.shorthand: render(body, env, pos)}
        else:
            raise SpecError(f"'{kind}' takes no arguments here; write '- {kind}'", pos)
        labels = [f"'{self.display(v.node)}'" for v in inputs]
        return self.make(kind, (args, body), name, pos, scope, inputs, labels)

    def make(
        self,
        kind: str,
        args_raw: tuple[dict[str, Any], Any] | None,
        name: str | None,
        pos: Pos | None,
        scope: Scope,
        inputs: list[Value],
        labels: list[str],
    ) -> Value:
        op = ops.get(kind)
        assert op is not None
        if len(self.graph.nodes) >= self.limits.max_nodes:
            raise LimitError(
                f"the network has more than {self.limits.max_nodes:,} nodes (--max-nodes)", pos
            )
        module = None
        if op.is_module:
            module = scope.ns.child(self.claim_name(scope.ns, name, pos, kind))
            node_id = module
        else:
            node_id = scope.ns.child(name or op.name)
        node_id = self.unique(node_id)
        self.charge_path(node_id, pos)
        tainted = any(v.tainted for v in inputs)
        try:
            node = make_node(
                op,
                node_id,
                args_raw,
                [v.node for v in inputs],
                [v.shape for v in inputs],
                labels,
                module,
                scope.ns.path.rstrip("."),
                pos,
                [self.graph.layout_of(v.node) for v in inputs],
            )
        except ShapeError as exc:
            exc.cascade = tainted
            raise
        if module is not None:
            previous = scope.ns.modules.get(module)
            if previous is not None:
                if (
                    previous.params
                    or previous.buffers
                    or previous.op != node.op
                    or previous.args != node.args
                ):
                    at = f" (line {previous.pos.line})" if previous.pos else ""
                    label = module.rpartition(".")[2]
                    raise SpecError(
                        f"name '{label}' is already used{at}; only "
                        "identical parameter-free layers may share a name",
                        pos,
                    )
                node.shared = True
            else:
                scope.ns.modules[module] = node
        self.graph.nodes[node_id] = node
        self.ids.add(node_id)
        return Value(node_id, node.shape, tainted)

    def claim_name(self, ns: Namespace, name: str | None, pos: Pos | None, kind: str | None) -> str:
        """The next index, or the explicit name; both advance the counter like nn.Sequential."""
        label = name if name is not None else str(ns.counter)
        ns.counter += 1
        full = ns.child(label)
        if kind is None and (full in ns.modules or full in self.graph.scopes):
            raise SpecError(f"name '{label}' is already used in this block", pos)
        if kind is not None and full in self.graph.scopes:
            raise SpecError(f"name '{label}' is already used by a block or seq here", pos)
        return label

    def unique(self, node_id: str) -> str:
        if node_id not in self.ids:
            return node_id
        n = self.suffixes.get(
            node_id, 2
        )  # resumes where the last search stopped: O(1), not O(uses)
        while f"{node_id}~{n}" in self.ids:
            n += 1
        self.suffixes[node_id] = n + 1
        return f"{node_id}~{n}"

    def display(self, node_id: str) -> str:
        return "input" if node_id == INPUT else node_id


def _show(value: Any) -> str:
    """A block argument as the user would write it: 2, 0.5, true, [1, 2], relu."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if NAME_RE.match(value) else repr(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def expand(spec: LoadedSpec, limits: Limits | None = None) -> Graph:
    """Expand a validated spec into its IR graph, inferring every shape on the way."""
    return Expander(spec, limits or Limits()).run()


__all__ = ["Limits", "expand", "fmt_shape"]
