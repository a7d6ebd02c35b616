"""`archc export --to torchscript|onnx|exported-program`: deployable artifacts of the built model.

Each artifact is written in eval mode, loaded back and run on a random batch; its output must equal
the eager model's (onnxruntime runs the ONNX file where it is installed). ONNX and the
ExportedProgram come from one torch.export trace, shared when both are asked for in one call. A
model PyTorch's exporter cannot handle is a clear error naming the format, never a traceback.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archc.atomic import atomic_write_bytes
from archc.errors import SpecError

if TYPE_CHECKING:
    from torch.export import ExportedProgram

    from archc.compiler.emit import CompiledModel

FORMATS = ("torchscript", "onnx", "exported-program")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx", "exported-program": ".pt2"}
TRACED = ("exported-program", "onnx")  # written from a torch.export trace (one for both)
Runner = Callable[[torch.Tensor], list[torch.Tensor]]


class ExportError(SpecError):
    """The model cannot be exported to the requested format (PyTorch's reason included)."""


def export_artifact(
    model: CompiledModel, fmt: str, path: str | Path, verify: bool = True
) -> dict[str, Any]:
    """Write `model` (eval mode) as `fmt` to `path`; returns what was checked against eager."""
    return export_artifacts(model, {fmt: path}, verify)[0]


def export_artifacts(
    model: CompiledModel, targets: Mapping[str, str | Path], verify: bool = True
) -> list[dict[str, Any]]:
    """Write `model` (eval mode) in each format of `targets` (format -> path), tracing it once
    for the formats torch.export captures; returns what was checked against eager, per format."""
    unknown = [fmt for fmt in targets if fmt not in FORMATS]
    if unknown or not targets:
        raise ExportError(
            f"unknown export format {(unknown or [''])[0]!r}; choose one of {', '.join(FORMATS)}"
        )
    onnxruntime = _onnxruntime() if "onnx" in targets else None  # before any slow work
    graph = model.archc_graph
    model = model.eval()
    torch.manual_seed(0)
    x = torch.randn(2, *graph.input_shape)
    traced = [fmt for fmt in targets if fmt in TRACED]
    program: ExportedProgram | None = None
    if traced:
        with _exporting(graph.name, " and ".join(traced)):
            program = torch.export.export(
                model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)
            )
    probe = torch.randn(3, *graph.input_shape)  # another batch size: the batch is dynamic
    if verify:
        with torch.no_grad():
            want = _tensors(model(probe))
    reports = []
    for fmt, path in targets.items():
        with _exporting(graph.name, fmt):
            if fmt == "torchscript":
                run = _torchscript(model, Path(path))
            elif fmt == "exported-program":
                assert program is not None  # traced above
                run = _exported_program(program, Path(path))
            else:
                assert program is not None
                run = _onnx(program, Path(path), onnxruntime)
        report: dict[str, Any] = {"format": fmt, "path": str(path), "verified": False}
        if verify:
            _check(run(probe), want, f"{fmt} export of {graph.name}")
            report.update(verified=True, checked_with="onnxruntime" if fmt == "onnx" else fmt)
        reports.append(report)
    return reports


@contextmanager
def _exporting(name: str, fmt: str) -> Iterator[None]:
    """The exporter's own failure, reported plainly in one line that names the format."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except ExportError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"cannot export {name} to {fmt}: {type(exc).__name__}: {reason[:500]}"
        ) from None


def _check(got: list[torch.Tensor], want: list[torch.Tensor], what: str) -> None:
    # float32 kernels differ in summation order: tolerances scale with the output's magnitude
    # (an untrained deep model's logits can be large)
    if len(got) != len(want) or not all(
        torch.allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, w.abs().max().item()))
        for g, w in zip(got, want, strict=False)
    ):
        diff = max(
            ((g - w).abs().max().item() for g, w in zip(got, want, strict=False)),
            default=float("nan"),
        )
        raise ExportError(f"{what} differs from the eager model (max abs diff {diff:.3g})")


def _torchscript(model: nn.Module, path: Path) -> Runner:
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    loaded = torch.jit.load(
        io.BytesIO(buffer.getvalue())
    )  # the bytes just written, never a user's file
    return lambda t: _no_grad(loaded, t)


def _exported_program(program: ExportedProgram, path: Path) -> Runner:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
    return lambda t: _no_grad(loaded, t)


def _onnxruntime() -> Any:
    """onnxruntime, once onnx and onnxscript (the exporter's needs) are known to import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx extra: pip install "
            "'archc[onnx]' (onnx, onnxscript, onnxruntime)"
        ) from None
    return onnxruntime


def _onnx(program: ExportedProgram, path: Path, onnxruntime: Any) -> Runner:
    # the ExportedProgram carries the dynamic batch dimension (no second trace); dynamic_shapes
    # names its axis
    onnx_program = torch.onnx.export(
        program, dynamic_shapes=({0: "batch"},), dynamo=True, verbose=False
    )
    assert onnx_program is not None
    buffer = io.BytesIO()
    onnx_program.save(buffer)  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda t: [torch.from_numpy(a) for a in session.run(None, {name: t.numpy()})]


def _no_grad(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return _tensors(fn(x))


def _tensors(out: object) -> list[torch.Tensor]:
    """A model's output (a tensor, or a tuple with its heads) as a flat list of tensors."""
    return (
        [torch.as_tensor(o) for o in out]
        if isinstance(out, (tuple, list))
        else [torch.as_tensor(out)]
    )


__all__ = ["FORMATS", "SUFFIX", "ExportError", "export_artifact", "export_artifacts"]
