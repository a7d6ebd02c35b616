"""A built model in one file (`archc build --save FILE`): the spec text, its overrides, input shape
and plugins, and the weights; `load_model(FILE)` rebuilds exactly that
model without the spec file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from archc.errors import ArchcError

if TYPE_CHECKING:
    import torch

    from archc.compiler.emit import CompiledModel
    from archc.compiler.validate import LoadedSpec

FORMAT = "archc-model"
VERSION = 1


class SavedModelError(ArchcError):
    """A file that is not a model saved by `archc build --save`."""


def model_bytes(model: torch.nn.Module, spec: LoadedSpec) -> bytes:
    """The file `archc build --save` writes: everything load_model needs, weights last."""
    import torch

    payload = {
        "format": FORMAT,
        "archc_version": VERSION,
        "spec_text": spec.document.source.text,
        "spec_path": spec.path,
        "overrides": spec.overrides,
        "plugins": list(spec.plugins),
        "input_shape": list(spec.input_shape),
        "state_dict": model.state_dict(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_model(path: str | Path, *, plugins: tuple[str, ...] = ()) -> CompiledModel:
    """Rebuild the model saved by `archc build --save FILE`, with its weights, in eval mode.

    The file is read with torch's weights-only loader and the spec is compiled from the text stored
    in it, so the original spec file need not exist. A file never chooses code to import: a spec
    using plugin ops needs them named here, as on the command line.
    """
    from archc import ops
    from archc.api import build
    from archc.compiler.loader import load_text
    from archc.compiler.validate import validate
    from archc.weights import WeightsError, read_torch_file

    try:
        stored = read_torch_file(path)
    except WeightsError as exc:
        raise SavedModelError(str(exc)) from None
    if not isinstance(stored, dict) or "spec_text" not in stored or "state_dict" not in stored:
        raise SavedModelError(
            f"{path}: not a model saved by `archc build --save` (no spec text and weights in it)"
        )
    for plugin in plugins:
        ops.load_plugin(plugin)
    document = load_text(stored["spec_text"], str(stored.get("spec_path") or path))
    spec = validate(document, dict(stored.get("overrides") or {}), tuple(plugins))
    model = build(spec, input_shape=tuple(stored["input_shape"]), force=True)
    model.load_state_dict(stored["state_dict"])
    return model.eval()
