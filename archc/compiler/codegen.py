"""One Python source per spec: what `archc.build` executes and `archc export --to python` writes.

As in torch.fx, the generated source is the model: every block call and named seq is a class (one
per spec block, its varying arguments as constructor parameters, like torchvision's BasicBlock),
scopes whose layers run one after another are nn.Sequential, and the root class ends its
`__init__` with the spec's `init:` rules. Forward code is straight-line, one statement per node,
with the output shape as a comment; in-place activations are used only where the IR proves them
safe, and each intermediate is deleted after its last reader so peak memory matches hand-written
code.

An op contributes code through its class: `emit()` returns a `Call` (a constructor such as
`nn.Conv2d(...)`, whose module the source imports), or a functional op returns `expression()`;
an op whose module class is not importable ships it as `Op.module_source`, which is pasted into the
file once.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import io
import math
import re
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from archc import ops
from archc.compiler.ir import INPUT, Graph, Node, ScopeInfo
from archc.compiler.names import is_plain_attribute
from archc.compiler.spec import InitSpec
from archc.ops.base import Call, Shape, fmt_shape

INDENT = "    "
LINE = 100
# Names the generated code uses itself: locals and classes never take them.
GLOBALS = frozenset({"self", "torch", "nn", "Any", "OrderedDict", "Sequential", "record", "m"})
# Base of the generated nn.Sequential subclasses: their constructors take block arguments, so
# nn.Sequential's own slicing (`type(self)(OrderedDict(...))`) could not rebuild them.
SEQUENTIAL_BASE = '''class Sequential(nn.Sequential):
    """nn.Sequential made by a block's constructor; its slices are plain nn.Sequential."""

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)'''
# A shape comment lists at most this many distinct shapes (the calls of one class); past it, none.
MAX_SHAPES = 4
TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# ---------------------------------------------------------------------------------------------
# the scope tree: the IR's nodes grouped by the module that runs them
@dataclass(eq=False)
class Scope:
    """One module of the model: the root, a block call or a named seq."""

    path: str
    info: ScopeInfo | None
    items: list[Node | Scope] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)  # every node inside, in order
    inputs: list[str] = field(default_factory=list)  # node ids it reads from outside
    outputs: list[str] = field(default_factory=list)  # its node ids read outside
    in_channels: int = 0  # channels of its first input: a name for a varying constructor argument
    group: ClassGroup | None = None  # None: written inline as nn.Sequential(...)

    @property
    def leaf(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def prefix(self) -> str:
        return f"{self.path}." if self.path else ""

    def walk(self) -> Iterator[Scope]:
        """This scope and every scope below it, children first."""
        for item in self.items:
            if isinstance(item, Scope):
                yield from item.walk()
        yield self

    def child_name(self, item: Node | Scope) -> str:
        return item.leaf if isinstance(item, Scope) else item.module.rpartition(".")[2]  # type: ignore[union-attr]

    @property
    def children(self) -> list[Node | Scope]:
        """Items that are child modules of this one (functional nodes and reuses are not), in the
        block's `module_order` where it has one (the others keep their places)."""
        children = [it for it in self.items if _is_child(it)]
        order = self.info.module_order if self.info is not None else ()
        if order:
            slots = [k for k, it in enumerate(children) if self.child_name(it) in order]
            listed = sorted(
                (children[k] for k in slots), key=lambda it: order.index(self.child_name(it))
            )
            for k, item in zip(slots, listed, strict=True):
                children[k] = item
        return children

    @property
    def sequential(self) -> bool:
        """Its children run one after another, each on the previous
        one's output: an nn.Sequential."""
        if (
            len(self.inputs) != 1
            or len(self.outputs) != 1
            or len(self.children) != len(self.items)
            or not self.items
        ):
            return False
        if any(
            isinstance(it, Scope) and it.info is not None and it.info.checkpoint
            for it in self.items
        ):
            return False  # its forward checkpoints a child
        if self.info is not None and self.info.module_order:
            return False  # declared in another order than they run
        if any(
            isinstance(it, Node) and (_owns_tensor(it) or _module_call(it)) for it in self.items
        ):
            return (
                False  # its forward reads a learned tensor of its own, or calls a child specially
            )
        prev = self.inputs[0]
        for item in self.items:
            if isinstance(item, Scope):
                if item.inputs != [prev] or len(item.outputs) != 1:
                    return False
                prev = item.outputs[0]
            else:
                if item.inputs != [prev]:
                    return False
                prev = item.id
        return prev == self.outputs[0]


def _owns_tensor(node: Node) -> bool:
    """The node is a learned tensor (nn.Parameter attribute), not a child module."""
    return bool(getattr(ops.get(node.op), "owns_tensor", False))


def _init_source(node: Node, tensor: str) -> str | None:
    """The in-place init statement of a learned tensor (`Op.init_source`), None for other nodes."""
    op = ops.get(node.op)
    return op.init_source(node.args, tensor) if op is not None and op.owns_tensor else None


def _module_call(node: Node) -> str | None:
    """The op's template for calling its module (`Op.module_call`), None for `module(x)`."""
    return getattr(ops.get(node.op), "module_call", None)


def scope_tree(graph: Graph) -> Scope:
    """Group the graph's nodes by scope. Scopes are contiguous runs of nodes (expansion order)."""
    root = Scope("", None)
    stack = [root]
    closed: set[str] = set()
    for node in graph:
        chain = _scope_chain(node.scope, graph)
        while stack[-1].path and stack[-1].path not in chain:
            closed.add(stack.pop().path)
        for path in chain[chain.index(stack[-1].path) + 1 if stack[-1].path else 0 :]:
            if path in closed:
                raise RuntimeError(f"internal error: scope {path} is not contiguous")
            child = Scope(path, graph.scopes[path])
            stack[-1].items.append(child)
            stack.append(child)
        stack[-1].items.append(node)
    readers = graph.consumers
    for scope in root.walk():
        scope.nodes = [
            n for it in scope.items for n in ([it] if isinstance(it, Node) else it.nodes)
        ]
        inside = {n.id for n in scope.nodes}
        scope.inputs = list(
            dict.fromkeys(s for n in scope.nodes for s in n.inputs if s not in inside)
        )
        scope.outputs = [
            n.id for n in scope.nodes if any(r not in inside for r in readers[n.id])
        ] or [scope.nodes[-1].id]
        shape = graph.shape_of(scope.inputs[0]) if scope.inputs else ()
        scope.in_channels = shape[0] if shape else 0
    return root


def _scope_chain(path: str, graph: Graph) -> list[str]:
    """'layer1.0' -> ['layer1', 'layer1.0']: the scopes enclosing a namespace path."""
    if not path:
        return []
    parts = path.split(".")
    chain = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return [p for p in chain if p in graph.scopes]


# ---------------------------------------------------------------------------------------------
# constructor expressions with holes: what varies between calls of one block becomes a parameter
@dataclass
class Hole:
    hint: str  # a parameter name if this value varies between calls
    value: object
    default: object = (
        inspect.Parameter.empty
    )  # the constructor's default: a constant equal to it is omitted

    def constant_text(self) -> str | None:
        """The literal, or None where it equals the default
        (`nn.Conv2d(..., stride=1)` -> no `stride`)."""
        if self.default is not inspect.Parameter.empty and _frozen(self.value) == _frozen(
            self.default
        ):
            return None
        return literal(self.value)


@dataclass(eq=False)
class Expr:
    """How one child module is constructed: a leaf `Call`, an inline
    nn.Sequential, or a block class."""

    call: Call | None = None
    seq: list[tuple[str, Expr]] | None = None
    scope: Scope | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # of the call's keyword arguments
    init: str | None = None  # a learned tensor's in-place init (Op.init_source), written after it

    def skeleton(self) -> tuple[object, ...]:
        if self.call is not None:
            return (
                "call",
                self.call.target,
                len(self.call.args),
                tuple(self.call.kwargs),
                self.init,
            )
        if self.seq is not None:
            return ("seq", tuple((name, e.skeleton()) for name, e in self.seq))
        assert self.scope is not None and self.scope.group is not None
        group = self.scope.group
        if group.varargs:
            return ("class", id(group), tuple(e.skeleton() for _, e in group.fields(self.scope)))
        present = {name for name, _ in group.fields(self.scope)}
        return ("class", id(group), tuple(n in present for n in group.optional))

    def holes(self, field_name: str) -> list[Hole]:
        if self.call is not None:
            names = _argument_names(self.call.target)
            out = [
                Hole(f"{field_name}_{names[i] if i < len(names) else f'arg{i}'}", v)
                for i, v in enumerate(self.call.args)
            ]
            return out + [
                Hole(f"{field_name}_{k}", v, self.defaults.get(k, inspect.Parameter.empty))
                for k, v in self.call.kwargs.items()
            ]
        if self.seq is not None:
            return [h for name, e in self.seq for h in e.holes(f"{field_name}_{name}")]
        assert self.scope is not None and self.scope.group is not None
        group = self.scope.group
        if group.varargs:
            fields = group.fields(self.scope)
            return [h for name, e in fields for h in e.holes(f"{field_name}_{name}")]
        values = group.arguments(self.scope)
        holes = [
            Hole(name, value, group.defaults.get(name, inspect.Parameter.empty))
            for name, value in zip(group.param_names(), values, strict=True)
        ]
        present = dict(group.fields(self.scope))
        given = [name for name in group.given() if name in present]
        return holes + [h for name in given for h in present[name].holes(f"{field_name}_{name}")]

    def render(self, fill: Iterator[str | None], indent: int) -> str:
        if self.call is not None:
            parts = [str(next(fill)) for _ in self.call.args]
            parts += [f"{k}={text}" for k in self.call.kwargs if (text := next(fill)) is not None]
            return f"{self.call.target}({', '.join(parts)})"
        if self.seq is not None:
            parts = [e.render(fill, indent + 1) for _, e in self.seq]
            return _call_text("nn.Sequential", parts, indent)
        assert self.scope is not None and self.scope.group is not None
        group = self.scope.group
        if group.varargs:  # its layers, built by the caller
            layers = [e.render(fill, indent + 1) for _, e in group.fields(self.scope)]
            return _call_text(group.name, layers, indent)
        parts = []
        for name in group.param_names():
            text = next(fill)
            if name not in group.defaults:
                parts.append(str(text))
            elif text is not None:
                parts.append(f"{name}={text}")
        present = dict(group.fields(self.scope))
        parts += [
            f"{group.argument_name(name)}={present[name].render(fill, indent)}"
            for name in group.given()
            if name in present
        ]
        return f"{group.name}({', '.join(parts)})"


def _call_text(target: str, parts: list[str], indent: int) -> str:
    """`target(a, b)` on one line where it fits, else one argument per line."""
    flat = f"{target}({', '.join(parts)})"
    if len(flat) + indent * 4 + 20 <= LINE or len(parts) < 2:
        return flat
    pad = INDENT * (indent + 1)
    return f"{target}(\n" + "".join(f"{pad}{p},\n" for p in parts) + INDENT * indent + ")"


def _argument_names(target: str) -> list[str]:
    """Positional parameter names of a constructor (`nn.Conv2d` ->
    in_channels, out_channels, ...)."""
    return [
        p.name
        for p in _parameters(target)
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _signature(target: str) -> dict[str, Any]:
    """Constructor parameters (positional-or-keyword and keyword-only) -> default, in order."""
    return {
        p.name: p.default
        for p in _parameters(target)
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _parameters(target: str) -> tuple[inspect.Parameter, ...]:
    cls = _resolve(target)
    return _class_parameters(cls) if cls is not None else ()


@functools.lru_cache(maxsize=1024)
def _class_parameters(cls: Callable[..., object]) -> tuple[inspect.Parameter, ...]:
    """A constructor's parameters: inspect.signature is slow and a model asks for the same few
    classes thousands of times (once per layer and per candidate class of the code generator)."""
    try:
        return tuple(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return ()


def _resolve(target: str) -> Callable[..., object] | None:
    module_name, _, attr = target.rpartition(".")
    if module_name == "nn":
        module_name = "torch.nn"
    try:
        return getattr(importlib.import_module(module_name), attr, None) if module_name else None
    except ImportError:
        return None


def literal(value: object) -> str:
    """Python source for a constructor argument; only plain data can appear in generated code."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, tuple):
        return f"({', '.join(literal(v) for v in value)}{',' if len(value) == 1 else ''})"
    if isinstance(value, list):
        return f"[{', '.join(literal(v) for v in value)}]"
    raise ValueError(f"op emitted an argument that is not plain data: {value!r}")


def _frozen(value: object) -> object:
    return (
        tuple(_frozen(v) for v in value)
        if isinstance(value, (list, tuple))
        else (type(value), value)
    )


# ---------------------------------------------------------------------------------------------
# classes
@dataclass(eq=False)
class ClassGroup:
    """The calls of one spec block (or one seq) that share a structure: one generated class."""

    base: str
    sequential: bool
    instances: list[Scope]
    fields: Callable[[Scope], list[tuple[str, Expr]]]
    name: str = ""
    _params: list[tuple[str, list[int]]] | None = None  # (name, hole positions)
    defaults: dict[str, Any] = field(default_factory=dict)  # parameter -> default (the block's own)
    optional: tuple[str, ...] = ()  # child modules some calls lack: passed in, None when absent
    # child modules built differently by different calls (a ReLU or a Hardswish, a block's layer
    # list): field name -> constructor argument that passes the module in, as torchvision's
    # Conv2dNormActivation takes its activation and MBConv its layers
    passed: dict[str, str] = field(default_factory=dict)
    arg_names: dict[str, str] = field(default_factory=dict)  # of optional indexed children
    # an nn.Sequential of whatever layers its calls pass in (stages with different block lists,
    # as torchvision's ResNet builds each `layerN` from its own blocks)
    varargs: bool = False
    # calls that run different forwards on the same children (a residual add or not): one
    # representative call per forward; the `variant` argument selects it, as torchvision's
    # InvertedResidual's use_res_connect does
    variants: list[Scope] = field(default_factory=list)
    variant_of: dict[str, int] = field(default_factory=dict)  # call path -> its variant
    _constants: dict[int, Hole] = field(default_factory=dict)

    literals: Callable[[Scope], list[Hole]] | None = None  # the numbers in its forward, per call
    # parameters its forward reads (as self.NAME)
    stored: dict[str, None] = field(default_factory=dict)

    def holes(self, scope: Scope) -> list[Hole]:
        fields = [
            h
            for name, expr in self.fields(scope)
            if name not in self.optional and name not in self.passed
            for h in expr.holes(_hint(name))
        ]
        return fields + (self.literals(scope) if self.literals is not None else [])

    def field_hole_count(self) -> int:
        first = self.instances[0]
        return len(self.holes(first)) - (len(self.literals(first)) if self.literals else 0)

    def forward_names(self) -> dict[int, str]:
        """Forward literal index -> the parameter it reads (`self.NAME`), for those that vary."""
        start = self.field_hole_count()
        params = self._resolve_params()
        return {i - start: name for name, positions in params for i in positions if i >= start}

    def _resolve_params(self) -> list[tuple[str, list[int]]]:
        if self._params is not None:
            return self._params
        per_instance = [self.holes(s) for s in self.instances]
        count = len(per_instance[0])
        candidates = [_candidates(s) for s in self.instances]
        params: list[tuple[str, list[int]]] = []
        by_values: dict[object, int] = {}
        # a parameter its forward reads is stored as an attribute: never a child module's name
        taken = set(GLOBALS) | {name for s in self.instances for name, _ in self.fields(s)}
        taken |= set(self.passed.values()) | set(self.arg_names.values())
        for i in range(count):
            values = tuple(_frozen(holes[i].value) for holes in per_instance)
            if len(set(values)) == 1:
                self._constants[i] = per_instance[0][i]
                continue
            if values in by_values:
                params[by_values[values]][1].append(i)
                continue
            arg = next(
                (
                    n
                    for n in candidates[0]
                    if tuple(_frozen(c.get(n)) for c in candidates) == values
                ),
                None,
            )
            name = _unique(_local(arg or per_instance[0][i].hint, "arg"), taken)
            info = self.instances[0].info
            if arg is not None and info is not None and arg in info.defaults and name == arg:
                self.defaults[name] = info.defaults[arg]
            by_values[values] = len(params)
            params.append((name, [i]))
        params.sort(
            key=lambda p: p[0] in self.defaults
        )  # parameters with defaults last, as Python wants
        self._params = params
        start = count - (len(self.literals(self.instances[0])) if self.literals else 0)
        self.stored = {name: None for name, places in params if any(i >= start for i in places)}
        return params

    def signature(self) -> str:
        """`in_channels, out, kernel=1, stride=1`: the constructor's parameters."""
        self._resolve_params()
        names = [n for n in self.param_names() if n not in self.defaults]
        names += list(self.passed.values())  # required: before the parameters with defaults
        names += [
            f"{n}={literal(self.defaults[n])}" for n in self.param_names() if n in self.defaults
        ]
        return ", ".join([*names, *(f"{self.argument_name(n)}=None" for n in self.optional)])

    def given(self) -> list[str]:
        """Child modules the caller builds and passes in: the passed ones, then the optional."""
        return [*self.passed, *self.optional]

    def argument_name(self, child: str) -> str:
        return self.passed.get(child) or self.arg_names.get(child, child)

    def param_names(self) -> list[str]:
        return [name for name, _ in self._resolve_params()]

    def arguments(self, scope: Scope) -> list[object]:
        holes = self.holes(scope)
        return [holes[positions[0]].value for _, positions in self._resolve_params()]

    def fill(self) -> Iterator[str | None]:
        """Parameter names or literals (None: a default, omitted), hole by hole, in render order."""
        params = self._resolve_params()
        by_position = {i: name for name, positions in params for i in positions}
        for i in range(len(self._constants) + sum(len(p) for _, p in params)):
            yield by_position[i] if i in by_position else self._constants[i].constant_text()


def _candidates(scope: Scope) -> dict[str, Any]:
    """Names a varying value may take: the block's arguments, then its input's channel count."""
    out: dict[str, Any] = dict(scope.info.args) if scope.info else {}
    out.setdefault("in_channels", scope.in_channels)
    return out


def _hint(field_name: str) -> str:
    """The prefix of a varying value's parameter name: the child's name (`conv1_stride`), none for
    an indexed child of a sequential block (`padding`, not `m_0_padding`)."""
    return "" if field_name.isdigit() else _local(field_name, "m")


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}_{n}", n + 1
    taken.add(out)
    return out


def _local(text: str, fallback: str) -> str:
    """A readable ASCII identifier from a spec name ('layer1.0.relu~2' -> 'layer1_0_relu_2')."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_")
    if not base:
        return fallback
    if base[0].isdigit():
        base = f"{fallback}_{base}"
    return base if is_plain_attribute(base) and base not in GLOBALS else f"{base}_"


def class_name(name: str) -> str:
    """A Python class name from a spec name ('resnet_18' ->
    'Resnet18'); always a valid identifier."""
    words = re.sub(r"[^A-Za-z0-9]", " ", name).split()
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Model"
    return text if is_plain_attribute(text) and text[0].isalpha() else f"Model{text}"


# ---------------------------------------------------------------------------------------------
# the writer
class SourceWriter:
    """Writes the module source of one graph."""

    def __init__(self, graph: Graph, init: InitSpec | None, origin: str) -> None:
        self.graph = graph
        self.init = init
        self.origin = origin
        self.root = scope_tree(graph)
        self.inplace = graph.inplace_nodes
        self.calls: dict[str, Call] = {}
        self.helpers: dict[str, str] = {}
        for node in graph:
            if node.module is not None and not node.shared:
                op = ops.get(node.op)
                assert op is not None
                call = op.emit(
                    node.args,
                    [graph.shape_of(i) for i in node.inputs],
                    node.shape,
                    node.id in self.inplace,
                )
                if not TARGET_RE.match(call.target):
                    raise ValueError(f"op {node.op} emitted an unsupported target {call.target!r}")
                self.calls[node.id] = call
                helper = getattr(op, "module_source", None)
                if helper:
                    self.helpers[call.target] = helper.strip()
        self.defaults = self._normalise_calls()
        self.groups: list[ClassGroup] = []
        self._variant: int | None = None  # the variant whose forward body is being written
        self.root_name = class_name(graph.name)
        self.taken_classes = {*GLOBALS, self.root_name, *self.helpers}
        self._group_scopes()

    def _normalise_calls(self) -> dict[str, dict[str, Any]]:
        """Spell every call of one constructor with the same arguments, filling in defaults.

        Ops leave out arguments at their default (`nn.Conv2d(..., kernel_size=1)`); filled in, calls
        that differ only in such values share one class, the varying value a parameter. Returns the
        defaults per target, so that a constant equal to its default is left out again when written.
        """
        by_target: dict[str, list[str]] = {}
        for node_id, call in self.calls.items():
            by_target.setdefault(call.target, []).append(node_id)
        defaults: dict[str, dict[str, Any]] = {}
        for target, node_ids in by_target.items():
            signature = _signature(target)
            order = {name: i for i, name in enumerate(signature)}
            keys = sorted(
                dict.fromkeys(k for n in node_ids for k in self.calls[n].kwargs),
                key=lambda k: order.get(k, len(order)),
            )
            known = {
                k: signature[k]
                for k in keys
                if signature.get(k, inspect.Parameter.empty) is not inspect.Parameter.empty
            }
            positional = [d for d in signature.values()]
            width = max(len(self.calls[n].args) for n in node_ids)
            defaults[target] = known
            for n in node_ids:
                call = self.calls[n]
                args = call.args
                if (
                    len(args) < width
                    and all(
                        positional[i] is not inspect.Parameter.empty
                        for i in range(len(args), width)
                        if i < len(positional)
                    )
                    and width <= len(positional)
                ):
                    args = (*args, *positional[len(args) : width])
                if all(k in call.kwargs or k in known for k in keys):
                    self.calls[n] = Call(
                        target,
                        args,
                        {k: call.kwargs[k] if k in call.kwargs else known[k] for k in keys},
                    )
                elif args is not call.args:
                    self.calls[n] = Call(target, args, call.kwargs)
        return defaults

    # grouping -----------------------------------------------------------------------------------
    def _group_scopes(self) -> None:
        by_key: dict[object, ClassGroup] = {}
        variants: dict[str, list[ClassGroup]] = {}
        for scope in self.root.walk():
            if scope is self.root:
                continue
            info = scope.info
            assert info is not None
            sequential = scope.sequential
            names = [scope.child_name(it) for it in scope.children]
            if info.block is None and sequential and names == [str(i) for i in range(len(names))]:
                continue  # inline nn.Sequential(...)
            base = class_name(info.block or scope.leaf)
            key = (
                base,
                sequential,
                self._field_shape(scope),
                None if sequential else _template(self.forward_code(scope, "forward"))[0],
            )
            group = by_key.get(key)
            if group is None:
                group = by_key[key] = ClassGroup(base, sequential, [], self.fields)
                if not sequential:
                    group.literals = self._literal_holes_of(group)
                variants.setdefault(base, []).append(group)
                self.groups.append(group)
            group.instances.append(scope)
            scope.group = group
        for groups in variants.values():
            self._merge_optional(groups)
        for groups in variants.values():
            self._merge_layer_lists(groups)
        for groups in variants.values():
            self._merge_behaviours(groups)
        self._regroup(variants)
        for group in self.groups:  # children first: an inner class's skeleton is final here
            if group.varargs:
                continue
            skeletons: dict[str, set[tuple[object, ...]]] = {}
            for instance in group.instances:
                for name, expr in self.fields(instance):
                    skeletons.setdefault(name, set()).add(expr.skeleton())
            taken = {n for n, _ in self.fields(group.instances[0])} | set(GLOBALS)
            group.passed = {
                name: name if not name.isdigit() else _unique(self._role(group, name), taken)
                for name, kinds in skeletons.items()
                if len(kinds) > 1 and name not in group.optional
            }
        for base, groups in variants.items():
            if not groups:
                continue
            first = {n for n, _ in self.fields(groups[0].instances[0])}
            for k, group in enumerate(groups):
                extra = (
                    [n for n, _ in self.fields(group.instances[0]) if n not in first] if k else []
                )
                group.name = _unique(
                    base + "".join(class_name(n) for n in extra), self.taken_classes
                )

    def _absorb(self, keep: ClassGroup, group: ClassGroup) -> None:
        """Merge `group` into `keep`: its scopes are emitted with keep's class."""
        keep.instances += group.instances
        for instance in group.instances:
            instance.group = keep
        self.groups.remove(group)

    def _merge_layer_lists(self, groups: list[ClassGroup]) -> None:
        """Variants of a sequential block with indexed layers that still differ (a stage of two
        blocks and one of three, a first block that downsamples): one nn.Sequential class that
        its calls build from their own layers, `Stage(BasicBlock(...), BasicBlock(...))`."""
        numbered = [
            g
            for g in groups
            if g.sequential
            and not g.optional
            and all(n.isdigit() for n, _ in self.fields(g.instances[0]))
        ]
        if len(numbered) < 2:
            return
        keep = numbered[0]
        keep.varargs = True
        for group in numbered[1:]:
            self._absorb(keep, group)
            groups.remove(group)

    def _merge_behaviours(self, groups: list[ClassGroup]) -> None:
        """Variants of a block with the same children that run them differently (MBConv with and
        without its residual add): one class whose `variant` argument selects the forward."""
        by_children: dict[object, list[ClassGroup]] = {}
        for group in groups:
            scope = group.instances[0]
            if group.varargs or group.optional or len(scope.inputs) != 1 or len(scope.outputs) != 1:
                continue
            by_children.setdefault(self._field_shape(scope), []).append(group)
        for alike in by_children.values():
            if len(alike) < 2:
                continue
            keep = alike[0]
            keep.variants = [g.instances[0] for g in alike]
            for k, group in enumerate(alike):
                keep.variant_of.update({s.path: k for s in group.instances})
            keep.sequential = False
            keep.literals = self._literal_holes_of(keep)
            for group in alike[1:]:
                self._absorb(keep, group)
                groups.remove(group)

    def class_forward(
        self,
        group: ClassGroup,
        scope: Scope,
        comments: bool = False,
        absent: frozenset[str] = frozenset(),
        optional: frozenset[str] = frozenset(),
    ) -> str:
        """The forward of a class as one call runs it: with variants, every variant's body under
        `if VARIANT == k:` (the call's own variant number, a parameter once the calls differ)."""
        if not group.variants:
            return self.forward_code(
                scope, "forward", comments=comments, absent=absent, optional=optional
            )
        mine = group.variant_of[scope.path]
        last = len(group.variants) - 1
        head = ""
        bodies: list[str] = []
        for k, representative in enumerate(group.variants):
            self._variant = k
            runs = scope if k == mine else representative
            code = self.forward_code(runs, f"_forward_{k}", comments=comments)
            head = head or code.splitlines()[0]
            bodies.append(code)
        args = head[head.index("(") + 1 : head.rindex(")")].partition(", ")[2]
        lines = [head.replace("def _forward_0(", "def forward(")]
        for k in range(last):  # one method per variant, as two_modes' _forward_train/_forward_eval
            lines += [f"{INDENT}if {mine} == {k}:", f"{INDENT * 2}return self._forward_{k}({args})"]
        lines.append(f"{INDENT}return self._forward_{last}({args})")
        for body in bodies:
            lines += ["", *body.splitlines()]
        self._variant = None
        return "\n".join(lines)

    def _regroup(self, variants: dict[str, list[ClassGroup]]) -> None:
        """Groups that merging made alike (their children now share classes): one class."""
        seen: dict[object, ClassGroup] = {}
        for group in list(self.groups):  # children first: their classes are settled
            scope = group.instances[0]
            base = class_name(scope.info.block or scope.leaf) if scope.info else ""
            shape = None if group.varargs else self._field_shape(scope)
            code = None if group.sequential else self.class_forward(group, scope)
            forward = _template(code)[0] if code is not None else None
            key = (
                base,
                group.sequential,
                group.varargs,
                group.optional,
                tuple(group.arg_names.items()),
                shape,
                forward,
            )
            if key not in seen:
                seen[key] = group
                continue
            self._absorb(seen[key], group)
            variants[base].remove(group)

    def _role(self, group: ClassGroup, index: str) -> str:
        """The argument name of an indexed child that calls pass in: what its ops are
        (`activation`, `norm`: the archc.ops module that defines them), else `layer2`."""
        kinds = set()
        for scope in group.instances:
            item = next(it for it in scope.children if scope.child_name(it) == index)
            op = ops.get(item.op) if isinstance(item, Node) else None
            kinds.add(type(op).__module__.rpartition(".")[2] if op is not None else None)
        kind = kinds.pop() if len(kinds) == 1 else None
        return kind if kind and kind.isidentifier() and kind != "base" else f"layer{index}"

    def _merge_optional(self, groups: list[ClassGroup]) -> None:
        """Fold a variant that only lacks some child modules into the one that has them.

        `BasicBlock` without and with `downsample` become one class whose `downsample` is an
        optional constructor argument, as in torchvision, when the forward of the smaller variant
        is exactly the larger one's with those modules' outputs replaced by their inputs.
        """
        for small in sorted(groups, key=lambda g: len(g.instances[0].children)):
            for big in groups:
                if big is small or big.sequential != small.sequential or small not in groups:
                    continue
                if big.sequential:
                    if self._merge_trailing(big, small, groups):
                        break
                    continue
                scope, other = big.instances[0], small.instances[0]
                names = [n for n, _ in self.fields(scope)]
                mine = [n for n, _ in self.fields(other)]
                extra = tuple(n for n in names if n not in mine)
                if (
                    not extra
                    or [n for n in names if n in mine] != mine
                    or (big.optional and big.optional != extra)
                ):
                    continue
                children = {scope.child_name(it): it for it in scope.children}
                if not all(_optional_child(n, children[n]) for n in extra):
                    continue
                if (
                    _template(self.forward_code(scope, "forward", absent=frozenset(extra)))[0]
                    != _template(self.forward_code(other, "forward"))[0]
                ):
                    continue
                # an optional child's call that holds a number: the literals would not line up
                mine_numbers = _template(self.forward_code(other, "forward"))[1]
                if len(_template(self.forward_code(scope, "forward"))[1]) != len(mine_numbers):
                    continue
                big.optional = extra
                big.instances += small.instances
                for instance in small.instances:
                    instance.group = big
                groups.remove(small)
                self.groups.remove(small)
                break

    def _merge_trailing(self, big: ClassGroup, small: ClassGroup, groups: list[ClassGroup]) -> bool:
        """Fold a sequential variant that lacks the last layers of another into it: the class
        appends them when given (torchvision's Conv2dNormActivation without an activation)."""
        scope, other = big.instances[0], small.instances[0]
        names = [n for n, _ in self.fields(scope)]
        mine = [n for n, _ in self.fields(other)]
        extra = tuple(names[len(mine) :])
        if names != [str(i) for i in range(len(names))] or not mine or names[: len(mine)] != mine:
            return False
        if not extra or (big.optional and big.optional != extra):
            return False
        children = dict(zip(names, scope.children, strict=True))
        if not all(_passable(n, children[n]) for n in extra):
            return False
        if self._field_shape(scope)[: len(mine)] != self._field_shape(other):
            return False
        big.optional = extra
        taken = set(GLOBALS) | set(big.arg_names.values())
        big.arg_names.update({n: _unique(self._role(big, n), taken) for n in extra})
        big.instances += small.instances
        for instance in small.instances:
            instance.group = big
        groups.remove(small)
        self.groups.remove(small)
        return True

    def _field_shape(self, scope: Scope) -> tuple[object, ...]:
        """A scope's children as the grouping key sees them: names, and the skeleton of those
        that callers cannot pass in."""
        fields = self.fields(scope)
        children = dict(zip((n for n, _ in fields), scope.children, strict=True))
        return tuple((n, None if _passable(n, children[n]) else e.skeleton()) for n, e in fields)

    def _literal_holes_of(self, group: ClassGroup) -> Callable[[Scope], list[Hole]]:
        """The numbers in one call's forward (a stochastic depth's rate, a reshape's size), named
        after the line's variable: those that vary between calls become constructor parameters that
        the forward reads as attributes, as a hand-written module stores `self.p = p`."""

        def holes(scope: Scope) -> list[Hole]:
            present = {n for n, _ in self.fields(scope)}
            absent = frozenset(n for n in group.optional if n not in present)
            _, values = _template(self.class_forward(group, scope, absent=absent))
            return [Hole(hint, value) for hint, value in values]

        return holes

    def fields(self, scope: Scope) -> list[tuple[str, Expr]]:
        out = []
        for item in scope.children:
            if isinstance(item, Scope):
                expr = Expr(scope=item) if item.group is not None else Expr(seq=self.fields(item))
            else:
                call = self.calls[item.id]
                expr = Expr(
                    call=call,
                    defaults=self.defaults.get(call.target, {}),
                    init=_init_source(item, "x"),
                )
            out.append((scope.child_name(item), expr))
        return out

    # forward code -------------------------------------------------------------------------------
    def forward_code(
        self,
        scope: Scope,
        name: str,
        mode: str = "train",
        comments: bool = False,
        absent: frozenset[str] = frozenset(),
        optional: frozenset[str] = frozenset(),
    ) -> str:
        """`def NAME(self, x): ...` running one scope's items (without comments: a grouping key).

        `absent` child modules are left out, their output being their input (what a call of the
        block without them computes); `optional` ones run only when present (`if self.downsample
        is not None`), as in torchvision's BasicBlock.
        """
        graph = self.graph
        skip = graph.train_only_nodes if mode == "eval" else frozenset()
        alias: dict[str, str] = {}
        items = []
        for it in scope.items:
            if _skipped(it, skip):
                continue
            if absent and _is_child(it) and scope.child_name(it) in absent:
                alias[it.outputs[0] if isinstance(it, Scope) else it.id] = alias.get(
                    it.inputs[0], it.inputs[0]
                )
                continue
            items.append(it)

        def sources(item: Node | Scope) -> list[str]:
            return [alias.get(s, s) for s in item.inputs]

        local: dict[str, str] = {}
        taken = set(GLOBALS)
        params = []
        for i, src in enumerate(scope.inputs):
            local[src] = _unique("x" if i == 0 else f"x{i}", taken)
            params.append(local[src])
        if scope is self.root:
            heads = [h for h in graph.heads if mode != "eval" or not h.train_only]
            returns = [graph.output, *(h.node for h in heads)]
        else:
            returns = scope.outputs
        returns = [alias.get(r, r) for r in returns]
        last_use: dict[str, int] = {}
        for i, item in enumerate(items):
            for src in sources(item):
                last_use[src] = i
        lines = [f"def {name}(self, {', '.join(params)}):"]
        for i, item in enumerate(items):
            inputs = sources(item)
            if isinstance(item, Scope):
                outs = item.outputs
                for out in outs:
                    text = item.leaf if len(outs) == 1 else out[len(scope.prefix) :]
                    local[out] = _unique(_local(text, "block"), taken)
                args = ", ".join(local[s] for s in inputs)
                target = ", ".join(local[o] for o in outs)
                access = _access("self", item.leaf)
                call = f"{access}({args})"
                if (
                    item.info is not None and item.info.checkpoint
                ):  # TorchScript drops the checkpoint
                    checkpointed = (
                        f"torch.utils.checkpoint.checkpoint({access}, {args}, use_reentrant=False)"
                    )
                    call = (
                        f"{checkpointed} if self.training and not "
                        f"torch.jit.is_scripting() else {call}"
                    )
                elif item.leaf in optional:
                    call = f"{call} if {access} is not None else {args}"
                lines.append(f"{INDENT}{target} = {call}" + self._comment(scope, item, comments))
            else:
                local[item.id] = _unique(_local(item.id[len(scope.prefix) :], item.op), taken)
                expr = self.node_expr(
                    item,
                    [local[s] for s in inputs],
                    lambda path: _access("self", path.rpartition(".")[2]),
                )
                if item.module is not None and scope.child_name(item) in optional:
                    expr = (
                        f"{expr} if {_access('self', scope.child_name(item))} "
                        f"is not None else {local[inputs[0]]}"
                    )
                lines.append(
                    f"{INDENT}{local[item.id]} = {expr}" + self._comment(scope, item, comments)
                )
            keep = set(returns)
            dead = [
                local[s] for s in dict.fromkeys(inputs) if last_use.get(s) == i and s not in keep
            ]
            if dead:
                lines.append(f"{INDENT}del {', '.join(dead)}")
        values = [local[r] for r in returns]
        lines.append(
            f"{INDENT}return {values[0]}"
            if len(values) == 1
            else f"{INDENT}return ({', '.join(values)})"
        )
        return "\n".join(lines)

    def node_expr(self, node: Node, args: list[str], access: Callable[[str], str]) -> str:
        """The expression computing one node from its inputs' variables."""
        op = ops.get(node.op)
        assert op is not None
        shapes = [self.graph.shape_of(i) for i in node.inputs]
        if node.module is not None and op.owns_tensor:
            return op.source(node.args, [access(node.module), *args], shapes, False)
        if node.module is not None and _module_call(node) and len(args) == 1:
            return str(_module_call(node)).format(module=access(node.module), x=args[0])
        if node.module is not None:
            return f"{access(node.module)}({', '.join(args)})"
        return op.source(node.args, args, shapes, node.id in self.inplace)

    def _comment(self, scope: Scope, item: Node | Scope, comments: bool) -> str:
        if not comments:
            return ""
        shapes = self._shape_text(scope, item)
        return f"  # {shapes}" if shapes else ""

    def _shape_text(self, scope: Scope, item: Node | Scope) -> str:
        """The output shape of an item in every call of its class: one shape where all calls agree,
        each distinct one (`96x56x56 | 192x28x28`) where they differ, nothing past MAX_SHAPES."""
        outputs = item.outputs if isinstance(item, Scope) else [item.id]
        ids = [i[len(scope.prefix) :] for i in outputs]
        calls = self._in_order(scope.group) if scope.group is not None else [scope]
        if scope.group is not None and scope.group.variants and self._variant is not None:
            calls = [c for c in calls if scope.group.variant_of[c.path] == self._variant]
        texts: dict[str, None] = {}
        for call in calls:
            if all(call.prefix + i in self.graph.nodes for i in ids):  # else: an absent child
                shapes = (self.graph.shape_of(call.prefix + i) for i in ids)
                texts[", ".join(fmt_shape(shape) for shape in shapes)] = None
        return " | ".join(texts) if len(texts) <= MAX_SHAPES else ""

    # the file -----------------------------------------------------------------------------------
    def class_source(self, group: ClassGroup) -> list[str]:
        scope = group.instances[0]
        base = "Sequential" if group.sequential else "nn.Module"
        doc = self._doc(group)
        lines = [f"class {group.name}({base}):", f'{INDENT}"""{doc}"""']
        if group.varargs:
            return lines  # nn.Sequential's own constructor takes the layers
        signature = group.signature()
        lines.append("")
        lines.append(f"{INDENT}def __init__(self{', ' + signature if signature else ''}):")
        lines += self.field_lines(scope, group.fill(), group.sequential, group)
        lines += [f"{INDENT * 2}self.{name} = {name}" for name in group.stored]
        if not group.sequential:
            lines.append("")
            optional = frozenset(group.optional)
            code = self.class_forward(group, scope, comments=True, optional=optional)
            lines += _indent(_substitute(code, group.forward_names()).splitlines())
        return lines

    def _doc(self, group: ClassGroup) -> str:
        scope = group.instances[0]
        info = scope.info
        assert info is not None
        what = f"spec block {info.block}" if info.block else f"seq {scope.path}"
        calls = len(group.instances)
        first = self._in_order(group)[:3]
        where = ", ".join(s.path for s in first) + (", ..." if calls > 3 else "")
        varies = any(self._shapes(s) != self._shapes(scope) for s in group.instances)
        varies = varies and not group.varargs
        listed = f" Comments give each call's shape where calls differ (none past {MAX_SHAPES})."
        note = listed if varies else ""
        return _doc_text(f"The {what}: {where}.{note}")

    def _in_order(self, group: ClassGroup) -> list[Scope]:
        """A class's calls in the order the model runs them (its first instance is the fullest)."""
        order = {path: i for i, path in enumerate(self.graph.scopes)}
        return sorted(group.instances, key=lambda s: order.get(s.path, 0))

    def _shapes(self, scope: Scope) -> list[Shape]:
        return [self.graph.shape_of(n.id) for n in scope.nodes]

    def root_source(self) -> list[str]:
        root = self.root
        graph = self.graph
        two_modes = any(h.train_only for h in graph.heads)
        sequential = root.sequential and not graph.heads and bool(root.items)
        base = "Sequential" if sequential else "nn.Module"
        lines = [
            f"class {self.root_name}({base}):",
            f'{INDENT}"""{_doc_text(graph.name)}: input {fmt_shape(graph.input_shape)}."""',
            "",
            f"{INDENT}def __init__(self):",
        ]
        fields = self.fields(root)
        fill = (h.constant_text() for name, expr in fields for h in expr.holes(name))
        lines += self.field_lines(root, fill, sequential)
        lines += self.init_lines()
        if sequential:
            return lines
        if two_modes:
            for mode in ("train", "eval"):
                lines.append("")
                lines += _indent(
                    self.forward_code(root, f"_forward_{mode}", mode, comments=True).splitlines()
                )
            lines += [
                "",
                f"{INDENT}def forward(self, x) -> Any:",
                f"{INDENT * 2}if self.training:",
                f"{INDENT * 3}return self._forward_train(x)",
                f"{INDENT * 2}return self._forward_eval(x)",
            ]
        else:
            lines.append("")
            lines += _indent(self.forward_code(root, "forward", comments=True).splitlines())
        return lines

    def field_lines(
        self,
        scope: Scope,
        fill: Iterator[str | None],
        sequential: bool,
        group: ClassGroup | None = None,
    ) -> list[str]:
        """`super().__init__()` and one line per child module, with
        its output shape as a comment."""
        fields = self.fields(scope)
        names = [name for name, _ in fields]
        if sequential and names == [str(i) for i in range(len(names))]:
            optional = group.optional if group else ()
            params = {group.argument_name(n) for n in group.given()} if group else set()
            listed = _unique("layers", params | set(group.param_names() if group else ()) | GLOBALS)
            lines = [f"{INDENT * 2}{listed} = [" if optional else f"{INDENT * 2}super().__init__("]
            for item, (name, expr) in zip(scope.children, fields, strict=True):
                if name in optional:
                    continue
                value = (
                    group.passed[name] if group and name in group.passed else expr.render(fill, 3)
                )
                lines.append(f"{INDENT * 3}{value},{self._comment(scope, item, True)}")
            if not optional:
                return [*lines, f"{INDENT * 2})"]
            lines.append(f"{INDENT * 2}]")
            for name in optional:  # the last layers, when given: their indices follow the others'
                arg = group.argument_name(name)  # type: ignore[union-attr]
                lines.append(f"{INDENT * 2}if {arg} is not None:")
                lines.append(f"{INDENT * 3}{listed}.append({arg})")
            return [*lines, f"{INDENT * 2}super().__init__(*{listed})"]
        lines = [f"{INDENT * 2}super().__init__()"]
        for item, (name, expr) in zip(scope.children, fields, strict=True):
            value = (
                group.argument_name(name)
                if group and name in group.given()
                else expr.render(fill, 2)
            )
            if isinstance(item, Node) and _owns_tensor(item):
                assign = (
                    f"self.{name} = nn.Parameter({value})"
                    if is_plain_attribute(name)
                    else f"self.register_parameter({name!r}, nn.Parameter({value}))"
                )
            else:
                assign = _assign(name, value)
            lines.append(f"{INDENT * 2}{assign}{self._comment(scope, item, sequential)}")
            init = _init_source(item, _access("self", name)) if isinstance(item, Node) else None
            if init:
                lines.append(f"{INDENT * 2}{init}")
        return lines

    def init_lines(self) -> list[str]:
        """The spec's `init:` rules as torchvision writes them: a loop over self.modules()."""
        if self.init is None:
            return []
        out: list[str] = []
        for kind in ("conv", "linear", "norm"):
            rule = self.init.rule(kind)
            nodes = [
                n
                for n in self.graph
                if n.id in self.calls and getattr(ops.get(n.op), "init_kind", None) == kind
            ]
            if rule.scheme == "torch" or not nodes:
                continue
            targets = sorted({self.calls[n.id].target for n in nodes})
            classes = targets[0] if len(targets) == 1 else f"({', '.join(targets)})"
            guard = "" if all(n.params for n in nodes) else " and m.weight is not None"
            out.append(f"{INDENT * 3}if isinstance(m, {classes}){guard}:")
            out.append(f"{INDENT * 4}{rule.weight_source('m.weight')}")
            if rule.bias is not None:
                out.append(f"{INDENT * 4}if m.bias is not None:")
                out.append(f"{INDENT * 5}nn.init.constant_(m.bias, {literal(rule.bias)})")
        return [f"{INDENT * 2}for m in self.modules():", *out] if out else []

    def imports(self, body: str) -> list[str]:
        modules = {"torch"}
        for call in self.calls.values():
            head = call.target.rpartition(".")[0]
            if head and head != "nn":
                modules.add(head)
        lines = [f"import {m}" for m in sorted(modules)]
        if "torch.utils.checkpoint.checkpoint(" in body:
            lines.append("import torch.utils.checkpoint")
        lines.append("from torch import nn")
        stdlib = [
            line
            for line, used in (
                ("from collections import OrderedDict", "(Sequential):" in body),
                ("from typing import Any", "-> Any" in body),
            )
            if used
        ]
        return [*stdlib, "", *lines] if stdlib else lines

    def write(self) -> str:
        blocks = (
            [[*dict.fromkeys(self.helpers.values())]] if self.helpers else []
        )  # one op may ship several
        for group in self.groups:
            blocks.append(self.class_source(group))
        blocks.append(self.root_source())
        if any(b[0].endswith("(Sequential):") for b in blocks):
            blocks.insert(0, [SEQUENTIAL_BASE])
        body = "\n\n\n".join("\n".join(b) for b in blocks)
        shape = ", ".join(str(d) for d in self.graph.input_shape)
        heads = {c.target.rpartition(".")[0] for c in self.calls.values()}
        foreign = sorted(h for h in heads if h and h != "nn" and h.partition(".")[0] != "torch")
        needs = (
            (
                f"Needs PyTorch and {', '.join(foreign)} (a plugin's "
                "module classes; archc itself is not needed)"
            )
            if foreign
            else "Needs only PyTorch"
        )
        head = f'"""{self.root_name}: generated by archc from {_doc_text(self.origin)}. {needs}."""'
        main = (
            f'if __name__ == "__main__":\n{INDENT}model = {self.root_name}().eval()\n'
            f"{INDENT}print(model(torch.zeros(1, {shape})).shape)"
        )
        return f"{head}\n\n" + "\n".join(self.imports(body)) + f"\n\n\n{body}\n\n\n{main}\n"


@functools.lru_cache(maxsize=4096)
def _number_spans(code: str) -> tuple[tuple[tuple[int, int], tuple[int, int], str], ...]:
    """Where the number literals of `code` are (start, end, text): the code generator compares
    and rewrites the same forward texts many times, and tokenizing is its costliest step."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return tuple((t.start, t.end, t.string) for t in tokens if t.type == tokenize.NUMBER)


@functools.lru_cache(maxsize=4096)
def _template(code: str) -> tuple[str, tuple[tuple[str, object], ...]]:
    """Forward code with its numbers blanked (what calls of one class share), and the numbers with
    the variable of the line each appears on (a parameter's name when it varies). Cached: the
    generator compares the same forward texts many times."""
    lines = code.splitlines()
    values = []
    for (row, _), _, text in _number_spans(code):
        line = lines[row - 1].strip()
        target = _local(line.partition(" = ")[0], "value")
        hint = "variant" if line.startswith(("if ", "elif ")) else f"{target}_value"
        values.append((hint, ast.literal_eval(text)))
    blanked = _substitute(code, dict.fromkeys(range(len(values)), "#"))
    return re.sub(r"#.*", "", blanked), tuple(values)


def _substitute(code: str, names: dict[int, str]) -> str:
    """Replace the k-th number of `code` by `self.NAME` for each k in `names`."""
    if not names:
        return code
    lines = code.splitlines()
    edits = [
        (start, end, names[k])
        for k, (start, end, _) in enumerate(_number_spans(code))
        if k in names
    ]
    for (row, col), (_, end), name in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = f"{line[:col]}self.{name}{line[end:]}"
    return "\n".join(lines)


def _passable(name: str, item: Node | Scope) -> bool:
    """A child module a caller may build and pass in: a layer (not a learned tensor, whose init
    is written after it) or a list of layers (an inline nn.Sequential), named by a plain attribute
    or an index. A block's own class is never passed: its variants stay classes of their own."""
    plain = (is_plain_attribute(name) and name not in GLOBALS) or name.isdigit()
    if isinstance(item, Node):
        return plain and not _owns_tensor(item)
    return plain and item.group is None


def _optional_child(name: str, item: Node | Scope) -> bool:
    """A child module that can be left out (None): one input, one output, a plain attribute name."""
    if not is_plain_attribute(name) or name in GLOBALS or len(item.inputs) != 1:
        return False
    if isinstance(item, Node):
        return not _owns_tensor(item)  # a learned tensor is always there
    return not isinstance(item, Scope) or (
        len(item.outputs) == 1 and not (item.info is not None and item.info.checkpoint)
    )


def _is_child(item: Node | Scope) -> bool:
    """A child module of its scope (not a functional node, nor a reuse of an earlier module)."""
    return isinstance(item, Scope) or (item.module is not None and not item.shared)


def _skipped(item: Node | Scope, skip: frozenset[str]) -> bool:
    if isinstance(item, Scope):
        return bool(item.outputs) and all(o in skip for o in item.outputs)
    return item.id in skip


def _access(owner: str, name: str) -> str:
    return (
        f"{owner}.{name}"
        if is_plain_attribute(name) and name not in GLOBALS
        else f"getattr({owner}, {name!r})"
    )


def _assign(name: str, expr: str) -> str:
    return (
        f"self.{name} = {expr}"
        if is_plain_attribute(name)
        else f"self.add_module({name!r}, {expr})"
    )


def _indent(lines: list[str]) -> list[str]:
    return [INDENT + line if line else line for line in lines]


def _doc_text(text: str) -> str:
    """Any text, escaped so that it cannot end a docstring or form an escape sequence."""
    return repr(text)[1:-1].replace('"', '\\"')


def module_source(graph: Graph, init: InitSpec | None, origin: str) -> str:
    """The one source of a spec's model: `archc.build` runs it,
    `archc export --to python` writes it."""
    return SourceWriter(graph, init, origin).write()


def probe_source(graph: Graph) -> str:
    """`def _probe(self, x)`: every node in order, recording each
    output's shape (build verification).

    It calls the model's own leaf modules and the same node expressions as the module source, laid
    out flat so that every intermediate, inside blocks too, is seen.
    """
    writer = SourceWriter.__new__(SourceWriter)
    writer.graph, writer.inplace = graph, frozenset()
    local = {INPUT: "x"}
    lines = ["def _probe(self, x):"]
    for i, node in enumerate(graph):
        local[node.id] = f"v{i}"
        expr = writer.node_expr(node, [local[s] for s in node.inputs], _path_access)
        lines += [f"{INDENT}v{i} = {expr}", f"{INDENT}record({node.id!r}, v{i})"]
    return "\n".join(lines) + "\n"


def _path_access(path: str) -> str:
    expr = "self"
    for part in path.split("."):
        expr = _access(expr, part)
    return expr


__all__ = ["class_name", "literal", "module_source", "probe_source", "scope_tree"]
