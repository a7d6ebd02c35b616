"""torchvision's published ImageNet weights for the zoo models that reproduce a torchvision model.

The weights come through torchvision's own API (`get_model_weights(NAME).DEFAULT`, its URL, meta
and transforms) and torch.hub's cache (`$TORCH_HOME/hub/checkpoints/FILE`), so a file downloaded
once, or placed there by hand on an offline machine, serves every later run. Which zoo model has
weights is decided here, in one place: a zoo name that is also a torchvision classifier with
weights is that model (tests/test_torchvision_zoo.py proves each such pair identical), with the
few differences in how its weights are used listed in QUIRKS.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch
from torch import nn

from archc.weights import WeightsError, mismatch_report

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum


@dataclass(frozen=True)
class Published:
    """A zoo spec's torchvision counterpart and how its published weights are used."""

    model: str  # the name torchvision.models.get_model_weights takes
    # Heads torchvision's builder drops when the model is built
    # without them (GoogLeNet's aux1/aux2).
    optional_heads: tuple[str, ...] = ()
    # GoogLeNet and Inception v3 weights were trained on inputs scaled to [-1, 1]: torchvision
    # converts ImageNet-normalised inputs inside the model (transform_input), the specs do not.
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    # Old-style keys in the published file, renamed as torchvision's builder does (DenseNet's
    # `norm.1` -> `norm1`): a regex whose two groups join into the key.
    old_keys: str | None = None


HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
DENSENET_KEYS = (
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
QUIRKS: dict[str, Published] = {
    "googlenet": Published("googlenet", optional_heads=("aux1.", "aux2."), normalization=HALF),
    "inception_v3": Published("inception_v3", optional_heads=("AuxLogits.",), normalization=HALF),
    **{
        name: Published(name, old_keys=DENSENET_KEYS)
        for name in ("densenet121", "densenet161", "densenet169", "densenet201")
    },
}


@functools.cache
def names() -> tuple[str, ...]:
    """The zoo models with published torchvision weights."""
    from torchvision.models import get_model_weights, list_models

    from archc import zoo

    torchvision_names = set(list_models(module=__import__("torchvision").models))
    return tuple(n for n in zoo.names() if n in torchvision_names and list(get_model_weights(n)))


def entry_of(name: str) -> Published | None:
    """How the zoo model `name` uses torchvision's weights, or None when it has none."""
    return QUIRKS.get(name, Published(name)) if name in names() else None


def published(spec_name: str, torchvision_name: str | None = None) -> tuple[Published, WeightsEnum]:
    """(how the weights are used, torchvision's DEFAULT weights enum) for a zoo model, or for
    torchvision:NAME loaded into the spec `spec_name`."""
    from torchvision.models import get_model_weights, list_models

    if torchvision_name is None:
        entry = entry_of(spec_name)
        if entry is None:
            raise WeightsError(
                f"{spec_name} has no published torchvision weights; "
                f"the zoo models that have: {', '.join(names())}"
            )
    else:
        entry = QUIRKS.get(torchvision_name, Published(torchvision_name))
    try:
        weights = get_model_weights(entry.model).DEFAULT
    except (ValueError, KeyError):
        from archc.errors import did_you_mean

        raise WeightsError(
            f"torchvision has no weights named '{entry.model}'"
            f"{did_you_mean(entry.model, list_models())}"
        ) from None
    return entry, weights


def preprocessing(
    entry: Published, weights: WeightsEnum, input_shape: tuple[int, ...] | None
) -> nn.Module:
    """torchvision's evaluation transforms for these weights (`weights.transforms()`: Resize,
    CenterCrop, normalise), with the quirks of the spec: [-1, 1] inputs for GoogLeNet and Inception
    v3, and a crop of the spec's input size (resize in the weights' proportion) when it was built
    for another."""
    options: dict[str, Any] = {}
    if entry.normalization is not None:
        options |= {"mean": entry.normalization[0], "std": entry.normalization[1]}
    size = input_shape[1:] if input_shape else None
    if size is not None and len(size) == 2 and size[0] == size[1]:
        own = weights.transforms()
        crop, resize = own.crop_size[0], own.resize_size[0]
        if size[0] != crop:  # a spec built for another input size: crop to it, resize in proportion
            options |= {"crop_size": size[0], "resize_size": round(size[0] * resize / crop)}
    return weights.transforms(**options)


def cache_path(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (or looks for) this weights file: $TORCH_HOME/hub/checkpoints/FILE."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The published state_dict via torchvision's weights API (torch.hub's cache, weights_only)."""
    target = cache_path(weights)
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        if target.is_file():
            raise WeightsError(
                f"{target} is not a readable weights file "
                f"({_first_line(exc)}); delete it to download again"
            ) from None
        raise WeightsError(
            f"cannot download {weights.url} ({_first_line(exc)}); on a machine without internet, "
            f"place that file at {target}"
        ) from None


def load_pretrained(model: nn.Module, spec_name: str, torchvision_name: str | None = None) -> str:
    """Load the published weights into a model compiled from the spec; returns a note for the user.

    The classifier, when built for another number of classes (`--set num_classes=10`), keeps its
    fresh initialisation and is named in the note; any other mismatch is an error.
    """
    entry, weights = published(spec_name, torchvision_name)
    state = state_dict(weights)
    own = model.state_dict()
    if entry.old_keys is not None:
        pattern = re.compile(entry.old_keys)
        state = {
            (m.group(1) + m.group(2) if (m := pattern.match(k)) else k): v for k, v in state.items()
        }
    state = {k: v for k, v in state.items() if k in own or not k.startswith(entry.optional_heads)}
    head = list(own)[-1].rsplit(".", 1)[0] + "."  # the classifier: the last module with parameters
    reshaped = [
        k
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape) and k.startswith(head)
    ]
    own_fitting = {k: v for k, v in own.items() if k not in reshaped}
    if set(state) != set(own) or mismatch_report(
        own_fitting, {k: v for k, v in state.items() if k not in reshaped}
    ):
        problems = mismatch_report(own, state)
        raise WeightsError(f"{weights} does not fit {spec_name}: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if k not in reshaped}, strict=False)
    note = f"initialised from torchvision's {weights} ({cache_path(weights)})"
    if reshaped:
        note += f"; {', '.join(reshaped)} kept fresh: the shapes differ (a new head)"
    return note


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
