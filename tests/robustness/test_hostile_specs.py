"""No code execution from a spec: object tags, expression escapes and
spec-named plugins are refused.

Every hostile payload here would create a marker file if archc ran it; each test checks the
marker is absent as well as the error. The YAML and expression cases are also run through a
real `archc check` subprocess (exit 1, every file reported with a position, no traceback).
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest

from archc import api
from archc.cli import main
from archc.errors import SpecError
from tests.conftest import run_archc
from tests.robustness.conftest import assert_positioned, spec_error, yaml_str

HEAD = "input: [3, 8, 8]\nlayers:\n"

# --------------------------------------------------------------------------- YAML tags

# (id, YAML text with MARKER standing for the marker path, (line, col) of the tagged node)
TAG_CASES = [
    (
        "python_object_apply",
        HEAD + "  - !!python/object/apply:pathlib.Path.touch [MARKER]\n",
        (3, 5),
    ),
    (
        "python_object_apply_map",
        HEAD
        + "  - relu\nparams:\n  x: !!python/object/apply:pathlib.Path.touch {args: [MARKER]}\n",
        (5, 6),
    ),
    (
        "python_object_new",
        "input: !!python/object/new:pathlib.Path [MARKER]\nlayers: [relu]\n",
        (1, 8),
    ),
    ("python_object", HEAD + "  - !!python/object:pathlib.Path {}\n", (3, 5)),
    ("python_name", "name: !!python/name:os.system\n" + HEAD + "  - relu\n", (1, 7)),
    ("python_module", "description: !!python/module:os\n" + HEAD + "  - relu\n", (1, 14)),
    ("python_tuple", "input: !!python/tuple [3, 8, 8]\nlayers: [relu]\n", (1, 8)),
    (
        "verbatim_tag",
        HEAD + "  - !<tag:yaml.org,2002:python/object/apply:pathlib.Path.touch> [MARKER]\n",
        (3, 5),
    ),
    (
        "tag_directive",
        "%TAG !py! tag:yaml.org,2002:python/object/apply:\n---\n"
        + HEAD
        + "  - !py!pathlib.Path.touch [MARKER]\n",
        (5, 5),
    ),
    ("local_tag", HEAD + "  - !include /etc/passwd\n", (3, 5)),
    ("binary", "description: !!binary aGVsbG8=\n" + HEAD + "  - relu\n", (1, 14)),
    ("set", "params: !!set {a, b}\n" + HEAD + "  - relu\n", (1, 9)),
    ("timestamp", "description: !!timestamp 2001-12-14\n" + HEAD + "  - relu\n", (1, 14)),
    (
        "tag_in_flow",
        HEAD + "  - conv: {out: !!python/object/apply:builtins.len [[1]], kernel: 3}\n",
        (3, 17),
    ),
]


def _with_marker(text: str, marker: Path) -> str:
    return text.replace("MARKER", yaml_str(str(marker)))


@pytest.mark.parametrize(("text", "pos"), [c[1:] for c in TAG_CASES], ids=[c[0] for c in TAG_CASES])
def test_object_tags_are_refused_with_a_position(
    text: str, pos: tuple[int, int], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    text = _with_marker(text, marker)
    exc = spec_error(api.compile_graph, text)
    # !!binary, !!set and !!timestamp are data, not code, but still no plain spec value: refused too
    assert re.search(
        r"YAML tag '.+' is not allowed in a spec|unsupported YAML value of type", exc.message
    ), exc.render()
    assert_positioned(exc, text)
    assert (exc.line, exc.col) == pos, exc.render()
    assert not marker.exists()


def test_plain_data_tags_still_load() -> None:
    text = (
        "name: !!str 2024\ninput: [!!int 3, 8, 8]\n"
        "params: {p: !!float 0.5, b: !!bool true, n: !!null ''}\nlayers: [relu]\n"
    )
    spec = api.load(text)
    assert (
        spec.name == "2024"
        and spec.input_shape == (3, 8, 8)
        and spec.params == {"p": 0.5, "b": True, "n": None}
    )


# --------------------------------------------------------------------------- expressions

TOUCH = "__import__('pathlib').Path(MARKER).touch()"

# (id, expression, regex the message must match)
EXPR_CASES = [
    ("import_call", TOUCH, r"dunder name '__import__' is not allowed|attribute access"),
    (
        "attribute_walk",
        "().__class__.__base__.__subclasses__()",
        r"attribute access \('\.\w+'\) is not allowed",
    ),
    ("attribute_on_param", "C.real", r"attribute access \('\.real'\) is not allowed"),
    ("open", "open(MARKER, 'w')", r"call to function 'open' is not allowed"),
    ("eval", "eval('1')", r"call to function 'eval' is not allowed"),
    ("exec", "exec('x = 1')", r"call to function 'exec' is not allowed"),
    ("getattr", "getattr(C, 'real')", r"call to function 'getattr' is not allowed"),
    ("globals", "globals()", r"call to function 'globals' is not allowed"),
    ("type", "type(C)", r"call to function 'type' is not allowed"),
    ("builtins_name", "__builtins__", r"dunder name '__builtins__' is not allowed"),
    (
        "lambda",
        "(lambda: 1)()",
        r"lambda expressions are not allowed|only calls to these functions",
    ),
    ("list_comprehension", "[x for x in [1, 2]]", r"list comprehensions are not allowed"),
    ("generator", "max(x for x in [1, 2])", r"generator expressions .* are not allowed"),
    ("walrus", "(x := 3)", r"walrus operator"),
    ("fstring", "f'{C}'", r"f-strings are not allowed"),
    ("subscript_of_a_number", "C[0]", r"'int' cannot be indexed"),
    ("subscript_out_of_range", "shape[10 ** 9]", r"index 1000000000 is out of range"),
    ("dict_literal", "{'a': 1}", r"dict literals are not allowed"),
    ("untaken_branch", f"1 if true else {TOUCH}", r"not allowed"),  # checked before anything runs
    ("keyword_argument", "max(1, 2, key=abs)", r"keyword arguments .* are not allowed"),
    ("huge_power", "9 ** 9 ** 9", r"exponent too large"),
    ("huge_power_tower", "2 ** 64 ** 64 ** 64", r"exponent too large|integer result too large"),
    ("power_result", "(10 ** 18) ** 2", r"integer result too large"),
    ("huge_literal", "1" + "0" * 30, r"integer literal too large"),
    ("growing_product", "10 ** 18 * 10 ** 18", r"integer result too large"),
    ("shift", "1 << 10 ** 9", r"operator '<<' is not allowed"),
    ("string_repeat", "'x' * 10 ** 9", r"only numbers may be multiplied"),
    ("list_repeat", "[0] * 10 ** 9", r"only numbers may be multiplied"),
    ("round_digits", "round(1, 10 ** 9)", r"ndigits too large"),
    ("int_of_long_string", "int('9' * 5000)", r"only numbers may be multiplied"),
    ("float_overflow", "1e308 * 10", r"float overflow"),
    ("range", "max(range(10 ** 12))", r"call to function 'range' is not allowed"),
    ("deep_nesting", "-" * 300 + "1", r"too deeply nested"),
    ("too_long", "+".join(["1"] * 501), r"expression too long \(1001 > 1000 characters\)"),
]


def _expr_spec(expression: str, marker: Path) -> str:
    value = "${" + expression.replace("MARKER", repr(str(marker))) + "}"
    return HEAD + f"  - conv: {{out: {yaml_str(value)}, kernel: 3}}\n"


@pytest.mark.parametrize(
    ("expression", "message"), [c[1:] for c in EXPR_CASES], ids=[c[0] for c in EXPR_CASES]
)
def test_hostile_expressions_are_refused(expression: str, message: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = _expr_spec(expression, marker)
    exc = spec_error(api.compile_graph, text)
    assert re.search(message, exc.message), exc.render()
    assert_positioned(exc, text)
    assert exc.line == 3 and exc.col >= 17, exc.render()  # on the expression, not elsewhere
    assert not marker.exists()


def test_the_allowed_expression_language_still_works() -> None:
    text = HEAD + "\n".join([
        "  - conv: {out: \"${max(16, C * 4) if H >= 8 and not false else min(1, 2)}\","
        " kernel: 3, padding: 1}",
        "  - conv: {out: \"${int(ceil(C / 3)) + abs(-2) + 2 ** 3 - 10 // 3 % 2}\", kernel: 1}",
        "  - conv: {out: \"${clamp(len(shape) * 4, 1, 8)}\", kernel: 1}",
    ]) + "\n"  # fmt: skip
    graph = api.compile_graph(text)
    assert [n.shape[0] for n in graph] == [16, 15, 8]  # 6 + 2 + 8 - 1


# --------------------------------------------------------------------------- code generation


def test_names_that_look_like_code_never_reach_generated_source() -> None:
    """Any name add_module accepts is legal; generated code only
    ever holds it as a string literal."""
    for name in ("x)\nimport os\n(", "a.b"):
        exc = spec_error(api.compile_graph, HEAD + f"  - {{relu: , name: {yaml_str(name)}}}\n")
        assert "name" in exc.message and exc.line == 3
    for name in ("a; import os", "__import__('os')", "x'); import os; ('"):
        model = api.build(HEAD + f"  - {{conv: {{out: 4, kernel: 1}}, name: {yaml_str(name)}}}\n")
        tree = ast.parse(model.code)
        assert not [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Import) and any(a.name == "os" for a in n.names)
        ]
        assert name in model.state_dict().__iter__().__next__()


def test_generated_forward_only_reads_its_locals_self_and_torch() -> None:
    """Keywords and builtin names are legal layer names; the generated forward stays inert code."""
    text = HEAD + textwrap.indent(
        textwrap.dedent("""\
        - {conv: {out: 4, kernel: 3, padding: 1}, name: class}
        - {relu: , name: print}
        - seq: [{conv: {out: 4, kernel: 1}, name: import}, {bn: , name: "0"}]
          name: lambda
        - {add: [[], [{conv: {out: 4, kernel: 1}, name: __import__}]]}
        - {flatten: , name: globals}
        - {linear: 3, name: exec}
    """),
        "  ",
    )
    model = api.build(text)
    allowed = (
        ast.Module,
        ast.ClassDef,
        ast.FunctionDef,
        ast.arguments,
        ast.arg,
        ast.Assign,
        ast.Delete,
        ast.Return,
        ast.Name,
        ast.Load,
        ast.Store,
        ast.Del,
        ast.Call,
        ast.Attribute,
        ast.Constant,
        ast.BinOp,
        ast.Add,
        ast.Tuple,
        ast.List,
        ast.Import,
        ast.ImportFrom,
        ast.alias,
        ast.Expr,
        ast.If,
        ast.Compare,
        ast.Eq,
        ast.For,
        ast.keyword,
        ast.IsNot,
        ast.UnaryOp,
        ast.USub,
        ast.Subscript,
    )
    tree = ast.parse(model.code)
    defined = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.For))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    defined |= {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    defined |= {
        a.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for a in node.args
    }
    defined |= {
        "torch",
        "nn",
        "OrderedDict",
        "getattr",
        "super",
        "isinstance",
        "print",
        "slice",
        "list",
        "__name__",
    }
    for node in ast.walk(tree):
        assert isinstance(node, allowed), f"{type(node).__name__} in generated code:\n{model.code}"
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            assert node.id in defined, f"{node.id} read in:\n{model.code}"
        if isinstance(node, ast.Constant):
            assert node.value is None or isinstance(node.value, (str, int, float)), model.code
    assert (
        "getattr(self, 'class')" in model.code
        and "self.add_module('import', nn.Conv2d(" in model.code
    )


@pytest.mark.parametrize("name", ["__init__", "__class__", "forward", "__dict__"])
def test_names_of_module_attributes_are_refused_before_any_code_runs(name: str) -> None:
    exc = spec_error(api.build, HEAD + f"  - {{relu: , name: {name}}}\n")
    assert (
        exc.message
        == f"name '{name}' is taken by an attribute of torch's nn.Module; choose another name"
    )
    assert (exc.line, exc.col) == (3, 20)


# --------------------------------------------------------------------------- plugins


PLUGIN = """
from pathlib import Path
from archc.ops import register
from archc.ops.activation import ReLU

Path({marker!r}).touch()


@register
class Probe(ReLU):
    name = "robust_probe"
    aliases = ()
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """(module name, marker): an importable plugin that touches the marker when imported."""
    name = f"archc_robust_plugin_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "plugin-imported"
    (tmp_path / f"{name}.py").write_text(PLUGIN.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)
    from archc import ops

    for key in [k for k, op in ops.REGISTRY.items() if op.name == "robust_probe"]:
        del ops.REGISTRY[key]
    ops._CANONICAL.pop("robust_probe", None)


def _specs_naming(module: str) -> list[str]:
    """Every place a spec might try to name a module: none of them may import it."""
    return [
        f"plugins: [{module}]\n" + HEAD + "  - relu\n",
        f"plugin: {module}\n" + HEAD + "  - relu\n",
        f"import: {module}\n" + HEAD + "  - relu\n",
        HEAD + f"  - {module}\n",
        HEAD + f"  - {{{module}: {{}}}}\n",
        HEAD + "  - robust_probe\n",
        HEAD + "  - relu\ntrain: {plugins: [" + module + "]}\n",
        HEAD + "  - relu\ntrain: {dataset: " + module + "}\n",
        f"name: {module}\ndescription: {module}\nparams: {{plugin: {module}}}\n"
        + HEAD
        + "  - {relu: , doc: "
        + module
        + "}\n",
        HEAD + "  - relu\nblocks: {B: {layers: [" + module + "], plugins: [" + module + "]}}\n",
        HEAD + f"  - {{relu: , name: {module}, when: \"${{'{module}' == '{module}'}}\"}}\n",
    ]


def test_a_spec_never_imports_a_plugin(plugin: tuple[str, Path]) -> None:
    module, marker = plugin
    for text in _specs_naming(module):
        try:
            api.compile_graph(text)
        except SpecError as exc:
            assert_positioned(exc, text)
        assert module not in sys.modules and not marker.exists(), text


def test_spec_named_stdlib_modules_are_not_imported() -> None:
    """`antigravity` opens a web browser when imported; a spec naming it must not import it."""
    for name in ("antigravity", "this", "idlelib", "turtle"):
        assert name not in sys.modules
        exc = spec_error(api.compile_graph, HEAD + f"  - {name}\n")
        assert f"unknown op or block '{name}'" in exc.message and (exc.line, exc.col) == (3, 5)
        assert name not in sys.modules


def test_plugins_load_when_the_user_names_them(
    plugin: tuple[str, Path], write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    module, marker = plugin
    path = write_spec(HEAD + "  - robust_probe\n")
    assert main(["check", str(path)]) == 1
    assert "unknown op or block 'robust_probe'" in capsys.readouterr().err and not marker.exists()
    assert main(["check", str(path), "--plugin", module]) == 0
    assert marker.exists() and module in sys.modules
    assert api.load(path, plugins=(module,)).plugins == (module,)


def test_an_unimportable_plugin_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], write_spec
) -> None:
    path = write_spec(HEAD + "  - relu\n")
    assert main(["check", str(path), "--plugin", "archc_no_such_plugin_module"]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: cannot import plugin 'archc_no_such_plugin_module'")
        and "Traceback" not in err
    )


# --------------------------------------------------------------------------- the command line


def test_archc_check_subprocess_reports_every_hostile_spec(tmp_path: Path) -> None:
    """One real `archc check` over every hostile spec above: exit 1, one
    positioned error each, no traceback."""
    marker = tmp_path / "pwned"
    texts = [_with_marker(text, marker) for _, text, _ in TAG_CASES] + [
        _expr_spec(e, marker) for _, e, _ in EXPR_CASES
    ]
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"hostile{i:02d}.yaml"
        path.write_text(text)
        paths.append(str(path))
    result = run_archc("check", *paths, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    for path in paths:
        assert re.search(rf"^error: {re.escape(path)}:\d+:\d+: ", result.stderr, re.MULTILINE), path
    assert not marker.exists()


def test_set_overrides_are_data_too(
    tmp_path: Path, write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--set` values go through the same loader: no tags, no alias bombs;
    expressions in them stay inert text."""
    marker = tmp_path / "pwned"
    path = write_spec(
        "params: {n: 4, label: x}\n" + HEAD + "  - {conv: {out: $n, kernel: 1}, name: $label}\n"
    )
    assert (
        main(
            ["check", str(path), "--set", f"n=!!python/object/apply:pathlib.Path.touch [{marker}]"]
        )
        == 1
    )
    assert "YAML tag" in capsys.readouterr().err and not marker.exists()
    bomb = (
        "["
        + ", ".join(
            f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "1"] * 9) + "]" for i in range(10)
        )
        + "]"
    )
    assert main(["check", str(path), "--set", f"n={bomb}"]) == 1
    assert "an alias bomb?" in capsys.readouterr().err
    inert = "${__import__('pathlib').Path('" + str(marker) + "').touch()}"
    exc = spec_error(api.compile_graph, path, label=inert)
    assert "contains '.'" in exc.message and not marker.exists()
