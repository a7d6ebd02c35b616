"""`archc export --to python`: a standalone file that runs without
archc and equals the built module.

Each exported file is imported in a fresh `python -I` process, outside the repository, without
PYTHONPATH and with `archc` made unimportable. There its state_dict keys and shapes must equal
the built module's, and after loading the built module's weights its outputs (eval and train
mode) must equal the built module's outputs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from archc import api
from archc.compiler.codegen import class_name
from archc.compiler.export import export_python
from tests.conftest import TEST_SPECS, clean_env, compile_and_verify, lang_specs, spec_id, spec_size

DRIVER = r"""
import importlib.util
import json
import sys

sys.modules["archc"] = None  # the exported code must not need archc: importing it now fails
try:
    import archc  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("archc is importable")

import torch

for case in json.load(open(sys.argv[1])):
    spec = importlib.util.spec_from_file_location(case["module"], case["source"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, case["cls"])
    torch.manual_seed(0)
    model = cls()
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(torch.load(case["state"], weights_only=True))
    x = torch.load(case["input"], weights_only=True)
    with torch.no_grad():
        model.eval()
        out_eval = model(x)
        model.train()
        torch.manual_seed(1)
        out_train = model(x)
    outputs = {"eval": out_eval, "train": out_train}
    torch.save({"fresh": fresh, "keys": list(fresh), **outputs}, case["result"])
import runpy

for case in json.load(open(sys.argv[1])):
    if case["script"]:  # the file also runs on its own: `python unet.py`
        runpy.run_path(case["source"], run_name="__main__")
leaked = [m for m, v in sys.modules.items()
          if (m == "archc" or m.startswith("archc.")) and v is not None]
assert not leaked, leaked
print("done", len(json.load(open(sys.argv[1]))))
"""

HEAVY_MACS = 10**8
HEAVY_PARAMS = 2 * 10**7


def _heavy(path: Path) -> bool:
    try:
        macs, params = spec_size(path)
    except Exception:
        return False
    return macs > HEAVY_MACS or params > HEAVY_PARAMS


# Exports of the big zoo models (up to 140M parameters) are not repeated here: their shapes are
# checked in test_emit, and the code paths are the same.
LIGHT = [p for p in lang_specs() if not _heavy(p)]
REPO = Path(__file__).resolve().parent.parent


def _export_all(paths: list[Path], folder: Path) -> dict[str, dict[str, Any]]:
    """Build, export and run every spec in one fresh interpreter; spec
    id -> built model and results."""
    work = folder / "outside_repo"
    work.mkdir()
    cases, built = [], {}
    for n, path in enumerate(paths):
        loaded = api.load(path)
        torch.manual_seed(n)
        model = api.build(loaded)
        graph = model.archc_graph
        source = export_python(graph, loaded.model.init, str(path))
        files = {k: work / f"case{n}.{k}" for k in ("py", "state", "input", "result")}
        files["py"].write_text(source)
        torch.save(model.state_dict(), files["state"])
        x = torch.randn(2, *graph.input_shape)
        torch.save(x, files["input"])
        with torch.no_grad():
            model.eval()
            out_eval = model(x)
            model.train()
            torch.manual_seed(1)
            out_train = model(x)
        cases.append(
            {
                "module": f"case{n}",
                "source": str(files["py"]),
                "cls": class_name(graph.name),
                "state": str(files["state"]),
                "input": str(files["input"]),
                "result": str(files["result"]),
                "script": path.stem == "lang_unet",
            }
        )
        built[spec_id(path)] = {
            "model": model,
            "eval": out_eval,
            "train": out_train,
            "result": files["result"],
            "source": source,
        }
    (work / "cases.json").write_text(json.dumps(cases))
    (work / "driver.py").write_text(DRIVER)
    result = subprocess.run(
        [sys.executable, "-I", str(work / "driver.py"), str(work / "cases.json")],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean_env(),
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for entry in built.values():
        entry["exported"] = torch.load(entry["result"], weights_only=True)
    built["stdout"] = result.stdout
    return built


def _check(entry: dict[str, Any]) -> None:
    model, got = entry["model"], entry["exported"]
    ours = model.state_dict()
    assert got["keys"] == list(ours)  # same keys, same order
    assert {k: v.shape for k, v in got["fresh"].items()} == {k: v.shape for k, v in ours.items()}
    for mode in ("eval", "train"):
        mine, theirs = entry[mode], got[mode]
        if isinstance(mine, tuple):
            assert isinstance(theirs, tuple) and len(theirs) == len(mine)
            for a, b in zip(mine, theirs, strict=True):
                torch.testing.assert_close(b, a)
        else:
            torch.testing.assert_close(theirs, mine)


def test_exported_files_equal_built_modules(tmp_path: Path) -> None:
    """One fresh interpreter runs every light spec's export (one test: a single subprocess)."""
    exported = _export_all(LIGHT, tmp_path)
    assert exported["stdout"].splitlines() == ["torch.Size([1, 2, 16, 16])", f"done {len(LIGHT)}"]
    failures = {}
    for path in LIGHT:
        try:
            _check(exported[spec_id(path)])
        except AssertionError as exc:
            failures[spec_id(path)] = str(exc)[:500]
    assert not failures, failures
    assert {"tests/specs/lang_aux", "tests/specs/lang_init", "tests/specs/lang_unet"} <= set(
        exported
    )

    # heads: a tuple in train mode, the main output in eval mode
    aux = exported["tests/specs/lang_aux"]
    assert isinstance(aux["exported"]["train"], tuple) and len(aux["exported"]["train"]) == 2
    assert isinstance(aux["exported"]["eval"], torch.Tensor)
    assert (
        "def _forward_train(self, x):" in aux["source"]
        and "def _forward_eval(self, x):" in aux["source"]
    )
    fresh = exported["tests/specs/lang_init"]["exported"][
        "fresh"
    ]  # the spec's init: rules, applied by the file itself
    assert torch.equal(fresh["conv.bias"], torch.full((32,), 0.5))
    assert fresh["conv.weight"].std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.05)
    assert torch.equal(fresh["bn.weight"], torch.zeros(32)) and torch.equal(
        fresh["bn.bias"], torch.zeros(32)
    )
    assert torch.equal(fresh["fc.bias"], torch.full((128,), -1.0))
    assert fresh["fc.weight"].std().item() == pytest.approx(0.02, rel=0.05)


def test_exported_source_is_readable() -> None:
    loaded = api.load(TEST_SPECS / "lang_resnet.yaml")
    source = export_python(api.compile_graph(loaded), loaded.model.init, "specs/x.yaml")
    assert source.startswith(
        '"""LangResnet: generated by archc from specs/x.yaml. Needs only PyTorch."""'
    )
    assert "self.conv1 = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)" in source
    assert (
        "nn.Conv2d(8, 16, kernel_size=1, stride=2, bias=False)," in source
    )  # the downsample, an nn.Sequential
    assert "m_layer" not in source and "getattr(" not in source
    assert "import archc" not in source and "from archc" not in source
    assert "    def forward(self, x):" in source


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("3²d net", "C:\\Users\\new\\spec.yaml"),
        ("none", 'a"""b.yaml'),
        ("ünïcode-näme", "x'y\".yaml"),
        ("\x16\0", "plain.yaml"),
    ],
)
def test_odd_names_and_paths_give_valid_python(name: str, path: str, write_spec) -> None:
    spec = write_spec(f"name: {json.dumps(name)}\ninput: [3]\nlayers: [relu]\n")
    loaded = api.load(spec)
    source = export_python(api.compile_graph(loaded), None, path)
    namespace: dict[str, Any] = {}
    exec(compile(source, "exported.py", "exec"), namespace)
    cls = namespace[class_name(name)]
    assert cls.__name__.isidentifier()
    assert cls()(torch.ones(1, 3)).shape == (1, 3)
    assert api.build(loaded)(torch.ones(1, 3)).shape == (1, 3)


SHARED_RATES = """
name: shared
input: [4, 8, 8]
blocks:
  Res:
    params: {p: 0.0, c: 4}
    layers:
      - add:
          - [{conv: {out: $c, kernel: 3, padding: 1}}, {stochastic_depth: $p}]
          - []
layers:
  - {Res: {p: "${0.1 * i}"}, repeat: 3, name: stage}
  - {conv: {out: 8, kernel: 1, stride: 2}}
  - {Res: {p: 0.3, c: 8}}
"""


def test_calls_that_differ_in_a_forward_number_share_one_class(write_spec) -> None:
    """Stochastic-depth rates along a schedule (p = 0 included) make one class taking the rate, as a
    hand-written block stores `self.p`; eval and train-mode draws equal per-call classes' output."""
    model = api.build(write_spec(SHARED_RATES))
    assert model.code.count("class Res(") == 1 and "class Res_2" not in model.code
    rates = [m.stochastic_depth_value for m in model.modules() if type(m).__name__ == "Res"]
    assert rates == pytest.approx([1.0, 0.9, 0.8, 0.7])
    assert "self.stochastic_depth_value < 1.0" in model.code
    x = torch.randn(64, 4, 8, 8)
    blocks = list(model.stage)
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        first = blocks[0](x)  # p = 0: the identity on the branch, no draw
        after = torch.randn(1)
        torch.manual_seed(0)
        assert torch.equal(torch.randn(1), after)
        torch.testing.assert_close(first, blocks[0].eval()(x))
        blocks[0].train()
        torch.manual_seed(0)
        dropped = blocks[2](x) - x  # p = 0.2: whole samples dropped, survivors scaled by 1/0.8
    zero = dropped.flatten(1).abs().sum(1) == 0
    assert 0 < zero.sum() < 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model.eval())
    torch.testing.assert_close(scripted(x[:2]), model(x[:2]))


@pytest.mark.parametrize(
    ("spec", "image_size"), [("convnext", 64), ("swin", 64), ("resnet20", None)]
)
def test_shape_comments_hold_for_every_call_of_a_class(spec: str, image_size: int | None) -> None:
    """Each `y = self.child(...)  # shapes` line of a class: the child's runtime output shape, in
    every instance of the class, is one of the shapes its comment lists (meta device: no
    weights)."""
    with torch.device("meta"):
        sizes = {"image_size": image_size} if image_size else {}
        model = api.build(REPO / "specs" / f"{spec}.yaml", force=True, **sizes)
    calls: dict[str, list[tuple[str, list[str]]]] = {}
    current = ""
    for line in model.code.splitlines():
        if line.startswith("class "):
            current = line[6:].partition("(")[0]
        call = r"(?:self\.(\w+)|getattr\(self, '([^']+)'\))"
        found = re.match(rf"\s+\w+ = {call}\(.*\)  # (.*)$", line)
        if found:  # a class with variants calls a child on several lines: any of them
            calls.setdefault(current, []).append((found[1] or found[2], found[3].split(" | ")))
    for lines in calls.values():
        union: dict[str, list[str]] = {}
        for child, shapes in lines:
            union.setdefault(child, []).extend(shapes)
        lines[:] = list(union.items())
    seen: list[tuple[str, str]] = []
    for module in model.modules():
        for child, shapes in calls.get(type(module).__name__, []):

            def check(
                m: nn.Module, i: Any, out: Any, shapes: list[str] = shapes, child: str = child
            ) -> None:
                text = "x".join(str(d) for d in out.shape[1:])
                assert text in shapes, (child, text, shapes)
                seen.append((type(m).__name__, text))

            module.get_submodule(child).register_forward_hook(check)
    model.eval()(torch.empty(1, *model.archc_graph.input_shape, device="meta"))
    assert len(seen) > 20
    assert any(len(s) > 1 for c in calls.values() for _, s in c)  # calls that differ


PASSED_LAYERS = """
name: passed
input: [4, 8, 8]
blocks:
  ConvAct:
    params: {out: null, act: relu}
    layers:
      - {conv: {out: $out, kernel: 3, padding: 1}}
      - bn
      - $act
  Unit:
    params: {expand: 1}
    layers:
      - add:
          - - seq:
                - {ConvAct: {out: "${C * expand}"}, when: "${expand != 1}"}
                - {ConvAct: {out: 4, act: hardswish}}
              name: block
          - []
layers:
  - {ConvAct: {out: 4}}
  - {ConvAct: {out: 4, act: hardswish}}
  - {Unit: {expand: 2}}
  - {Unit: }
"""


def test_layers_that_calls_build_differently_are_passed_in(write_spec) -> None:
    """A block whose calls differ in an activation, or in the layer list of a child, is one class
    that takes the module, as torchvision's Conv2dNormActivation takes its activation."""
    model = compile_and_verify(write_spec(PASSED_LAYERS))
    code = model.code
    assert code.count("class ConvAct(") == 1 and "class ConvAct_2" not in code
    assert code.count("class Unit(") == 1 and "class Unit_2" not in code
    assert "def __init__(self, in_channels, out, activation):" in code
    assert "activation=nn.Hardswish()" in code and "activation=nn.ReLU(inplace=True)" in code
    assert "    def __init__(self, block):" in code and "Unit(block=nn.Sequential(" in code
    assert [type(m).__name__ for m in model[2].block] == ["ConvAct", "ConvAct"]
    assert isinstance(model[0][2], nn.ReLU) and isinstance(model[1][2], nn.Hardswish)
    assert list(model.state_dict())[:2] == ["0.0.weight", "0.0.bias"]
    assert "2.block.1.1.running_mean" in model.state_dict()


def test_a_sequential_block_without_its_last_layer_is_the_same_class(write_spec) -> None:
    model = compile_and_verify(
        write_spec("""
        input: [4, 8, 8]
        blocks:
          ConvNorm:
            params: {out: null, act: true}
            layers: [{conv: {out: $out, kernel: 1}}, bn, {relu: , when: $act}]
        layers:
          - {ConvNorm: {out: 4}}
          - {ConvNorm: {out: 6, act: false}}
    """)
    )
    assert model.code.count("class ConvNorm(") == 1 and "class ConvNorm_2" not in model.code
    assert "activation=None):" in model.code and "layers.append(activation)" in model.code
    assert [len(m) for m in model] == [3, 2] and list(model.state_dict())[
        -1
    ] == "1.1.num_batches_tracked"


def test_stages_with_different_blocks_are_one_sequential_class() -> None:
    """ResNet-18's stages (the first with two plain blocks, the others downsampling first) are one
    `Stage` nn.Sequential built from its blocks, as torchvision's _make_layer builds each layerN."""
    loaded = api.load(REPO / "specs/resnet18.yaml")
    source = export_python(api.compile_graph(loaded), loaded.model.init, "specs/resnet18.yaml")
    classes = re.findall(r"^class (\w+)\(", source, re.M)
    assert classes == ["Sequential", "Stage", "BasicBlock", "Resnet18"]
    assert "self.layer1 = Stage(BasicBlock(64, 64), BasicBlock(64, 64))" in source
    assert "def __init__(self, in_channels, planes, stride=1, downsample=None):" in source


def test_calls_that_run_their_children_differently_share_a_class_with_a_variant(write_spec) -> None:
    """A block whose residual add depends on its arguments (MBConv, InvertedResidual): one class,
    its `variant` argument selecting the forward, as torchvision's use_res_connect."""
    model = compile_and_verify(
        write_spec("""
        input: [4, 8, 8]
        blocks:
          Inverted:
            params: {out: null}
            layers:  # the residual form first: after it C == out, so the plain form is dropped
              - add: [[{seq: [{conv: {out: $out, kernel: 1}}, bn], name: block}], []]
                when: "${C == out}"
              - {seq: [{conv: {out: $out, kernel: 1}}, bn], name: block, when: "${C != out}"}
        layers:
          - {Inverted: {out: 8}}
          - {Inverted: {out: 8}}
    """)
    )
    code = model.code
    assert code.count("class Inverted(") == 1 and "class Inverted_2" not in code
    assert "if self.variant == 0:" in code and "def _forward_1(self, x):" in code
    assert [m.variant for m in model] == [0, 1]
    x = torch.randn(2, 4, 8, 8)
    model.eval()
    with torch.no_grad():
        hidden = model[0].block(x)
        torch.testing.assert_close(model[0](x), hidden)
        torch.testing.assert_close(model[1](hidden), model[1].block(hidden) + hidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
