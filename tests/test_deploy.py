"""The zoo through the one build path: exported sources, TorchScript,
torch.export, ONNX, torch.compile.

Cheap checks run on every zoo spec (source generation, ruff, scripting on the meta device); the
ones that build real weights run on the light specs and, marked slow, on the whole zoo.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from archc import api
from archc.cli import main
from archc.compiler.codegen import class_name
from archc.compiler.deploy import FORMATS, ExportError, export_artifact
from archc.compiler.emit import CompiledModel, execute
from archc.compiler.export import export_python
from archc.errors import SpecError
from tests.conftest import TEST_SPECS, spec_size

REPO = Path(__file__).resolve().parent.parent
ZOO = sorted((REPO / "specs").glob("*.yaml"))
HEAVY = 10**8  # MACs: the big ImageNet models are built with real weights only in slow tests


def _zoo(heavy_slow: bool) -> list[object]:
    out = []
    for path in ZOO:
        heavy = spec_size(path)[0] > HEAVY
        marks = [pytest.mark.slow] if heavy and heavy_slow else []
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


def test_exported_zoo_sources_are_ruff_clean(tmp_path: Path) -> None:
    for path in ZOO:
        loaded = api.load(path)
        (tmp_path / f"{path.stem}.py").write_text(export_python(api.compile_graph(loaded), loaded.model.init, str(path)))
    # the project's own selection; long lines are allowed as in the project
    rules = "E,F,W,I,B,UP,SIM,RUF"
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select", rules, "--ignore", "E501",
                             str(tmp_path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]


def test_exported_googlenet_reads_like_torchvision_s() -> None:
    reference = importlib.import_module("torchvision.models.googlenet")
    loaded = api.load(REPO / "specs/googlenet.yaml", aux=True)
    source = export_python(api.compile_graph(loaded), loaded.model.init, "specs/googlenet.yaml")
    assert len(source.splitlines()) <= 1.5 * len(Path(reference.__file__).read_text().splitlines())
    assert "class Inception(nn.Module):" in source and "class InceptionAux(" in source
    assert "self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)" in source
    assert "getattr(" not in source and not re.search(r"\bm_\w+ = ", source)  # no synthetic container locals


@pytest.mark.parametrize("path", _zoo(heavy_slow=True))
def test_build_and_export_give_identical_tensors_under_one_seed(path: Path) -> None:
    loaded = api.load(path)
    torch.manual_seed(0)
    built = api.build(loaded, force=True)
    source = export_python(built.archc_graph, loaded.model.init, str(path))
    assert source == built.code.replace(str(loaded.path), str(path))
    torch.manual_seed(0)
    exported = execute(source, f"{path.stem}_export.py")[class_name(built.archc_graph.name)]()
    ours, theirs = built.state_dict(), exported.state_dict()
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


@pytest.mark.parametrize("path", _zoo(heavy_slow=False))
def test_every_zoo_spec_is_scriptable(path: Path) -> None:
    with torch.device("meta"):
        model = api.build(path, force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    assert "forward" in scripted.code


@pytest.mark.parametrize("spec", ["lenet5", "resnet20", "googlenet_cifar"])
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


@pytest.mark.parametrize("fmt", FORMATS)
def test_deployable_exports_round_trip(fmt: str, tmp_path: Path) -> None:
    model = api.build(TEST_SPECS / "lang_resnet.yaml")
    report = export_artifact(model, fmt, tmp_path / f"net.{fmt}")
    assert report["verified"] and (tmp_path / f"net.{fmt}").stat().st_size > 1000


def test_export_command_writes_verified_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deep" / "lenet.pt2"
    assert main(["export", str(REPO / "specs/lenet5.yaml"), "--to", "exported-program", "-o", str(out)]) == 0
    assert out.exists() and "outputs equal the eager model's" in capsys.readouterr().err
    program = torch.export.load(str(out))
    assert program.module()(torch.randn(5, 1, 32, 32)).shape == (5, 10)


def test_unexportable_models_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = api.build(TEST_SPECS / "lang_resnet.yaml")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unsupported: data-dependent control flow\nlong trace")

    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(ExportError, match="cannot export lang_resnet to exported-program: RuntimeError: Unsupported"):
        export_artifact(model, "exported-program", tmp_path / "x.pt2")
    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(ExportError, match="cannot export lang_resnet to onnx: RuntimeError: Unsupported"):
        export_artifact(model, "onnx", tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"pip install 'archc\[onnx\]'"):
        export_artifact(model, "onnx", tmp_path / "x.onnx")


# One spec per family of the zoo (each op and block kind it uses), at the smallest input it takes.
COMPILE_FAMILIES = {
    "alexnet": 64, "convnext": 32, "densenet": 32, "efficientnet": 32, "efficientnet_v2": 32,
    "googlenet": 32, "inception_v3": 96, "maxvit": 224, "mnasnet": 32, "mobilenet_v2": 32,
    "mobilenet_v3": 32, "regnet": 32, "resnet": 32, "shufflenet_v2": 32, "squeezenet": 32,
    "swin": 32, "swin_v2": 32, "vgg": 32, "vit": 32, "se_resnet20": 0, "nin": 0, "lenet5": 0,
}


def test_the_compile_families_cover_the_zoo() -> None:
    families = {p.stem for p in ZOO if not re.match(r"(resnet|vgg)\d", p.stem)}
    covered_by_others = {  # the same ops and block kinds as a family above
        "alexnet_d2l", "alexnet_small", "densenet_bc_cifar", "fmnist_net", "googlenet_cifar",
        "googlenet_paper", "inception_block_v3", "inception_cifar", "lenet_d2l", "resnet_cifar",
        "vgg_bn_cifar"}
    assert families - set(COMPILE_FAMILIES) <= covered_by_others
    assert set(COMPILE_FAMILIES) <= {p.stem for p in ZOO}


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "size"), list(COMPILE_FAMILIES.items()))
def test_torch_compile_has_no_graph_breaks(spec: str, size: int) -> None:
    """torch._dynamo traces the whole model as one graph, in eval and in train mode."""
    import torch._dynamo

    sizes = {"image_size": size} if size else {}
    model = api.build(REPO / "specs" / f"{spec}.yaml", force=True, **sizes)
    x = torch.randn(2, *model.archc_graph.input_shape)
    for mode in (False, True):
        model.train(mode)
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, (mode, explanation.break_reasons)
        assert explanation.graph_count == 1


# Deployable round trips (exported-program and ONNX, checked in onnxruntime). The quick loop runs
# two light specs (plain layers; concat branches); the suite, marked slow, one spec per family of
# op kinds the others lack (layer scale and stochastic depth, SE and hardswish, chunk and channel
# shuffle, window and partition attention, self-attention with a class token). Every zoo spec
# exports (a by-hand run: ARCHC_ZOO_EXPORTS=all, about 7 CPU-minutes, too many for the suite).
QUICK_EXPORTS = ("lenet5", "inception_block_v3")
SLOW_EXPORTS = ("convnext", "efficientnet", "maxvit", "mobilenet_v3", "shufflenet_v2", "swin_v2",
                "vit")
ALL_EXPORTS = os.environ.get("ARCHC_ZOO_EXPORTS") == "all"


def _export_cases() -> list[object]:
    out = []
    for path in ZOO:
        if path.stem in QUICK_EXPORTS:
            out.append(pytest.param(path, id=path.stem))
        elif ALL_EXPORTS or path.stem in SLOW_EXPORTS:
            out.append(pytest.param(path, id=path.stem, marks=[pytest.mark.slow]))
    return out


def _small(path: Path) -> CompiledModel:
    """The spec's model at 64x64 where it takes an image size (the export's checks do not depend on
    the resolution), else at its own input."""
    try:
        return api.build(path, force=True, image_size=64)
    except SpecError:
        return api.build(path, force=True)


@pytest.mark.parametrize("path", _export_cases())
@pytest.mark.parametrize("fmt", ["exported-program", "onnx"])
def test_every_zoo_spec_exports(path: Path, fmt: str, tmp_path: Path) -> None:
    """Written, loaded back (ONNX into onnxruntime) and equal to eager on another batch size."""
    report = export_artifact(_small(path), fmt, tmp_path / f"model.{fmt}")
    assert report["verified"] and report["checked_with"] == ("onnxruntime" if fmt == "onnx" else fmt)
