"""The zoo through the one build path: exported sources, TorchScript,
torch.export, ONNX, torch.compile.

Cheap checks run on every zoo spec (source generation, ruff, scripting on the meta device); the
ones that build real weights run on the light specs, and the deployable round trips on the specs
that together use every op of the zoo (marked slow but two).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch

from archc import api
from archc.cli import main
from archc.compiler.codegen import class_name
from archc.compiler.deploy import FORMATS, ExportError, export_artifact, export_artifacts
from archc.compiler.emit import execute
from archc.compiler.export import export_python
from archc.errors import SpecError
from tests.conftest import TEST_SPECS, op_covering_specs, spec_size

REPO = Path(__file__).resolve().parent.parent
ZOO = sorted((REPO / "specs").glob("*.yaml"))
HEAVY = 10**8  # MACs: the big ImageNet models are built with real weights only in slow tests


def _zoo(but: tuple[str, ...] = ()) -> list[object]:
    """Every zoo spec (`but` those named); the big ImageNet ones marked slow (the quick loop checks
    the light specs, `make test` all of them)."""
    return [
        pytest.param(
            path, id=path.stem, marks=[pytest.mark.slow] if spec_size(path)[0] > HEAVY else []
        )
        for path in ZOO
        if path.stem not in but
    ]


@pytest.mark.slow
def test_exported_zoo_sources_are_ruff_clean(tmp_path: Path) -> None:
    for path in ZOO:
        loaded = api.load(path)
        (tmp_path / f"{path.stem}.py").write_text(
            export_python(api.compile_graph(loaded), loaded.model.init, str(path))
        )
    # the project's own selection; long lines are allowed as in the project
    rules = "E,F,W,I,B,UP,SIM,RUF"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--select",
            rules,
            "--ignore",
            "E501",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_exported_googlenet_reads_like_torchvision_s() -> None:
    reference = importlib.import_module("torchvision.models.googlenet")
    loaded = api.load(REPO / "specs/googlenet.yaml", aux=True)
    source = export_python(api.compile_graph(loaded), loaded.model.init, "specs/googlenet.yaml")
    assert len(source.splitlines()) <= 1.5 * len(Path(reference.__file__).read_text().splitlines())
    assert "class Inception(nn.Module):" in source and "class InceptionAux(" in source
    assert "self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)" in source
    assert "getattr(" not in source and not re.search(
        r"\bm_\w+ = ", source
    )  # no synthetic container locals


@pytest.mark.parametrize("path", _zoo())
def test_build_and_export_give_identical_tensors_under_one_seed(path: Path) -> None:
    """The exported source is the built model's own source (the path it names aside), for every
    spec; run under one seed it gives identical tensors. The big ImageNet models are built on the
    meta device and stop at the source: the same text executes to the same model, and
    initialising 100M+ weights twice would cost the suite seconds per spec."""
    loaded = api.load(path)
    real = spec_size(path)[0] <= HEAVY
    torch.manual_seed(0)
    with torch.device("cpu" if real else "meta"):
        built = api.build(loaded, force=True)
    source = export_python(built.archc_graph, loaded.model.init, str(path))
    assert source == built.code.replace(str(loaded.path), str(path))
    if not real:
        return
    torch.manual_seed(0)
    exported = execute(source, f"{path.stem}_export.py")[class_name(built.archc_graph.name)]()
    ours, theirs = built.state_dict(), exported.state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


SCRIPTED_AND_RUN = ("lenet5", "resnet20", "googlenet_cifar")  # scripted with real weights below


@pytest.mark.parametrize("path", _zoo(but=SCRIPTED_AND_RUN))
def test_every_zoo_spec_is_scriptable(path: Path) -> None:
    """On the meta device (scripting reads no weights); the specs in SCRIPTED_AND_RUN are scripted
    and run against eager in the next test."""
    with torch.device("meta"):
        model = api.build(path, force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    assert "forward" in scripted.code


@pytest.mark.parametrize("spec", SCRIPTED_AND_RUN)
def test_scripted_model_computes_the_eager_outputs(spec: str) -> None:
    model = api.build(REPO / "specs" / f"{spec}.yaml").eval()
    x = torch.randn(2, *model.archc_graph.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
    model.train()
    scripted.train()
    torch.manual_seed(0)
    want = model(x)
    torch.manual_seed(0)
    got = scripted(x)
    assert isinstance(got, tuple) == isinstance(want, tuple)


def test_deployable_exports_round_trip(tmp_path: Path) -> None:
    """Every format from one call (ONNX and the ExportedProgram from one trace), each verified."""
    model = api.build(TEST_SPECS / "lang_resnet.yaml")
    reports = export_artifacts(model, {fmt: tmp_path / f"net.{fmt}" for fmt in FORMATS})
    assert [report["format"] for report in reports] == list(FORMATS)
    for fmt, report in zip(FORMATS, reports, strict=True):
        assert report["verified"], fmt
        assert (tmp_path / f"net.{fmt}").stat().st_size > 1000, fmt


def test_export_command_writes_verified_artifacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep" / "lenet.pt2"
    assert (
        main(
            ["export", str(REPO / "specs/lenet5.yaml"), "--to", "exported-program", "-o", str(out)]
        )
        == 0
    )
    assert out.exists() and "outputs equal the eager model's" in capsys.readouterr().err
    program = torch.export.load(str(out))
    assert program.module()(torch.randn(5, 1, 32, 32)).shape == (5, 10)


def test_export_command_writes_several_formats_under_one_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--to repeated or as a comma list; -o names every file, each with its format's suffix."""
    stem = tmp_path / "deep" / "lenet.pt2"  # a format's own suffix is dropped, then re-added
    argv = ["export", str(REPO / "specs/lenet5.yaml"), "-o", str(stem), "--format", "json"]
    assert main([*argv, "--to", "exported-program,torchscript", "--to", "python"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [(r["format"], Path(r["path"]).name, r.get("verified")) for r in reports] == [
        ("exported-program", "lenet.pt2", True),
        ("torchscript", "lenet.pt", True),
        ("python", "lenet.py", None),
    ]
    assert all(stem.with_suffix(suffix).stat().st_size > 1000 for suffix in (".pt", ".pt2"))
    assert "class Lenet5(" in stem.with_suffix(".py").read_text()
    with pytest.raises(SystemExit):
        main(["export", str(REPO / "specs/lenet5.yaml"), "--to", "onnx,tflite"])
    assert "invalid format 'tflite'" in capsys.readouterr().err


def test_unexportable_models_are_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failing step's format is named: the shared trace names both formats it serves."""
    model = api.build(TEST_SPECS / "lang_resnet.yaml")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unsupported: data-dependent control flow\nlong trace")

    with monkeypatch.context() as patched:
        patched.setattr(torch.export, "export", refuse)
        with pytest.raises(
            ExportError,
            match="cannot export lang_resnet to exported-program: RuntimeError: Unsupported",
        ):
            export_artifact(model, "exported-program", tmp_path / "x.pt2")
        with pytest.raises(
            ExportError,
            match="cannot export lang_resnet to exported-program and onnx: RuntimeError",
        ):
            export_artifacts(
                model, {"exported-program": tmp_path / "x.pt2", "onnx": tmp_path / "x.onnx"}
            )
    monkeypatch.setattr(torch.onnx, "export", refuse)  # the trace succeeds, ONNX fails
    with pytest.raises(
        ExportError, match="cannot export lang_resnet to onnx: RuntimeError: Unsupported"
    ):
        export_artifacts(
            model, {"exported-program": tmp_path / "x.pt2", "onnx": tmp_path / "x.onnx"}
        )
    assert (tmp_path / "x.pt2").stat().st_size > 1000  # written and verified before ONNX failed
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"pip install 'archc\[onnx\]'"):
        export_artifact(model, "onnx", tmp_path / "x.onnx")


# Deployable round trips in the quick loop: lang_resnet in every format (plain layers, a residual
# add; test_deployable_exports_round_trip) and a zoo spec with concat branches. Marked
# slow: the few zoo specs that together use every op of the zoo (an exporter's or the compiler's
# support is per op; the other specs combine the same ops), big families in a small configuration
# of the same ops (one block per stage where that keeps every op). torch.compile traces the same
# specs. Every zoo spec exports: a by-hand run, ARCHC_ZOO_EXPORTS=all (about 7 CPU-minutes, too
# many for the suite).
T = TypeVar("T")
QUICK_EXPORTS = ("inception_block_v3",)
SMALL_SWIN = {"embed_dim": 32, "num_heads": [1, 2], "depths": [2, 1]}  # a shifted second block
SMALL: dict[str, dict[str, object]] = {
    "maxvit": {
        "partition_size": 2,
        "stem_channels": 16,
        "block_channels": [16],  # one stage: its first block downsamples
        "block_layers": [1],
        "head_dim": 8,
    },
    "swin": SMALL_SWIN,
    "swin_v2": SMALL_SWIN,
    "vit": {"layers": 1, "hidden": 64, "heads": 4, "mlp": 128},
    "convnext": {"depths": [1, 1, 1, 1], "widths": [16, 32, 48, 64]},
    "mobilenet_v2": {  # a repeated block: the inverted residual's add
        "settings": [{"t": 1, "c": 16, "n": 1, "s": 1}, {"t": 6, "c": 24, "n": 2, "s": 2}]
    },
    "mobilenet_v3": {
        "last_channel": 64,
        "table": [
            {"k": 3, "exp": 16, "out": 16, "se": False, "act": "relu", "stride": 1},
            {"k": 5, "exp": 64, "out": 24, "se": True, "act": "hardswish", "stride": 2},
        ],
    },
    "shufflenet_v2": {"channels": [8, 16, 32, 64, 128], "repeats": [2, 1, 1]},  # a basic unit
    "resnet20": {"n": 1},  # an identity and an option-A shortcut
}


def _small(path: Path, make: Callable[..., T]) -> T:
    """The spec's model (`make`: build or compile) at 64x64 where it takes an image size (the
    export's checks do not depend on the resolution), else at its own input; a family in SMALL
    in its small configuration (an error there is the test's: it fails either way)."""
    small = SMALL.get(path.stem, {})
    try:
        return make(path, image_size=64, **small)
    except SpecError:
        return make(path, **small)


@functools.cache
def _exported_ops(path: Path) -> tuple[int, frozenset[str]]:
    """(nodes, ops) of the spec as exported (in its small configuration)."""
    graph = _small(path, api.compile_graph)
    return len(graph.nodes), frozenset(node.op for node in graph)


def _fewest(paths: list[Path]) -> list[Path]:
    """`paths` less each spec (the largest first) whose ops the others still use: the greedy cover
    picks small specs early that bigger picks make redundant. QUICK_EXPORTS stay."""
    kept = list(paths)
    for path in sorted(paths, key=lambda p: -_exported_ops(p)[0]):
        others = [p for p in kept if p != path]
        if path.stem not in QUICK_EXPORTS and _exported_ops(path)[1] <= frozenset().union(
            *(_exported_ops(p)[1] for p in others)
        ):
            kept = others
    return kept


EXPORTED = _fewest(sorted({*op_covering_specs(ZOO), *(p for p in ZOO if p.stem in QUICK_EXPORTS)}))
ALL_EXPORTS = ZOO if os.environ.get("ARCHC_ZOO_EXPORTS") == "all" else EXPORTED


def test_the_exported_specs_use_every_op_of_the_zoo() -> None:
    used = {node.op for path in ZOO for node in api.compile_graph(path)}
    assert used == frozenset().union(*(_exported_ops(path)[1] for path in EXPORTED))


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.stem, marks=[] if p.stem in QUICK_EXPORTS else [pytest.mark.slow])
        for p in ALL_EXPORTS
    ],
)
def test_every_zoo_op_exports(path: Path, tmp_path: Path) -> None:
    """Both formats from one trace, each written, loaded back (ONNX into onnxruntime) and equal to
    eager on another batch size (an ExportError names the format that failed)."""
    model = _small(path, functools.partial(api.build, force=True))
    formats = ("exported-program", "onnx")
    reports = export_artifacts(model, {fmt: tmp_path / f"model.{fmt}" for fmt in formats})
    checked = [(report["format"], report["verified"], report["checked_with"]) for report in reports]
    assert checked == [
        ("exported-program", True, "exported-program"),
        ("onnx", True, "onnxruntime"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in EXPORTED])
def test_torch_compile_has_no_graph_breaks(path: Path) -> None:
    """torch._dynamo traces the whole model as one graph, in eval and in train mode."""
    import torch._dynamo

    model = _small(path, functools.partial(api.build, force=True))
    x = torch.randn(2, *model.archc_graph.input_shape)
    for mode in (False, True):
        model.train(mode)
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, (mode, explanation.break_reasons)
        assert explanation.graph_count == 1
