"""`archc export --to torchscript|onnx|exported-program`: deployable artifacts of the built model.

Each artifact is written in eval mode, loaded back and run on a random batch; its output must equal
the eager model's (onnxruntime runs the ONNX file where it is installed). A model PyTorch's
exporter cannot handle is a clear error, never a traceback.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archc.atomic import atomic_write_bytes
from archc.errors import SpecError

if TYPE_CHECKING:
    from archc.compiler.emit import CompiledModel

FORMATS = ("torchscript", "onnx", "exported-program")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx", "exported-program": ".pt2"}
Runner = Callable[[torch.Tensor], list[torch.Tensor]]


class ExportError(SpecError):
    """The model cannot be exported to the requested format (PyTorch's reason included)."""


def export_artifact(
    model: CompiledModel, fmt: str, path: str | Path, verify: bool = True
) -> dict[str, Any]:
    """Write `model` (eval mode) as `fmt` to `path`; returns what was checked against eager."""
    writers: dict[str, Callable[[nn.Module, torch.Tensor, Path], Runner]] = {
        "torchscript": _torchscript,
        "onnx": _onnx,
        "exported-program": _exported_program,
    }
    if fmt not in writers:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    graph = model.archc_graph
    model = model.eval()
    torch.manual_seed(0)
    x = torch.randn(2, *graph.input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = writers[fmt](model, x, Path(path))
    except ExportError:
        raise
    except Exception as exc:  # the exporter's own failure: report it plainly
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"cannot export {graph.name} to {fmt}: {type(exc).__name__}: {reason[:500]}"
        ) from None
    report: dict[str, Any] = {"format": fmt, "path": str(path), "verified": False}
    if verify:
        probe = torch.randn(
            3, *graph.input_shape
        )  # another batch size: the batch dimension is dynamic
        with torch.no_grad():
            want = _tensors(model(probe))
        got = run(probe)
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
            raise ExportError(
                f"{fmt} export of {graph.name} differs from "
                f"the eager model (max abs diff {diff:.3g})"
            )
        report.update(verified=True, checked_with="onnxruntime" if fmt == "onnx" else fmt)
    return report


def _torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> Runner:
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    loaded = torch.jit.load(
        io.BytesIO(buffer.getvalue())
    )  # the bytes just written, never a user's file
    return lambda t: _no_grad(loaded, t)


def _exported_program(model: nn.Module, x: torch.Tensor, path: Path) -> Runner:
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
    return lambda t: _no_grad(loaded, t)


def _onnx(model: nn.Module, x: torch.Tensor, path: Path) -> Runner:
    try:  # the exporter needs onnx and onnxscript; the check against eager runs in onnxruntime
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx extra: pip install "
            "'archc[onnx]' (onnx, onnxscript, onnxruntime)"
        ) from None
    program = torch.onnx.export(
        model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False
    )
    assert program is not None
    buffer = io.BytesIO()
    program.save(buffer)  # type: ignore[arg-type]
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


__all__ = ["FORMATS", "SUFFIX", "ExportError", "export_artifact"]
