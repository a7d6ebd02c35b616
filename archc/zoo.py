"""The zoo by name: the specs shipped with the package, and the variants of family specs.

A zoo name is either a spec file's stem (`googlenet_cifar`) or an entry of a family spec's
`variants:` table (`resnet152` in `resnet.yaml`, a set of parameter values), the way timm's
registry maps model names to builders. `archc.load("resnet152")`, `archc build resnet152` and
`archc report resnet152` resolve names here; a path to a file works everywhere as before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.errors import SpecError, did_you_mean

# Package data: in a checkout archc/specs is a link to the repository's specs/ (the one home of
# the specs, where docs point), and a wheel carries the files themselves.
SPECS_DIR = Path(__file__).parent / "specs"


@dataclass(frozen=True)
class ZooModel:
    """A model of the zoo: the spec file to load and the parameter values that select it."""

    name: str
    path: Path
    params: dict[str, Any] = field(default_factory=dict)
    family: str | None = None  # the family spec's name when the model is one of its variants


def specs_dir() -> Path:
    """The directory of the shipped specs."""
    return SPECS_DIR


def registry(directory: Path | None = None) -> dict[str, ZooModel]:
    """Every zoo name (of the shipped specs, or of another directory's), sorted.

    A family's variant takes the name over a stand-alone file of the same stem (resnet.yaml's
    `resnet18` over resnet18.yaml, which the parity tests prove identical)."""
    return _registry(directory or specs_dir())


@functools.cache
def _registry(directory: Path) -> dict[str, ZooModel]:
    models: dict[str, ZooModel] = {}
    variants: dict[str, ZooModel] = {}
    for path in sorted(directory.glob("*.yaml")):
        models[path.stem] = ZooModel(path.stem, path)
        for name, params in _variant_table(path).items():
            if name in variants:
                raise SpecError(
                    f"zoo model '{name}' is a variant of both "
                    f"{variants[name].path.name} and {path.name}"
                )
            variants[name] = ZooModel(name, path, params, path.stem)
    models.update(variants)
    return dict(sorted(models.items()))


def _variant_table(path: Path) -> dict[str, dict[str, Any]]:
    """The `variants:` table of a spec file, read without the full
    loader (a fast pre-check first)."""
    text = path.read_text(encoding="utf-8")
    if "\nvariants:" not in text:
        return {}
    from ruamel.yaml import YAML

    table = YAML(typ="safe").load(text).get("variants") or {}
    return {str(name): dict(params or {}) for name, params in table.items()}


def published() -> dict[str, dict[str, Any]]:
    """torchvision's published figures of its 80 classifiers (num_params, gmacs, weights), from
    archc/data/torchvision_published.json (a test keeps it equal to torchvision's metadata)."""
    import json

    data = json.loads((Path(__file__).parent / "data" / "torchvision_published.json").read_text())
    return data["models"]


def resolve(name: str) -> ZooModel:
    """The zoo model called `name`, or a SpecError with the closest names."""
    models = registry()
    if name in models:
        return models[name]
    raise SpecError(
        f"no spec file or zoo model named '{name}'{did_you_mean(name, models)}; "
        "`archc zoo` lists the models"
    )


def is_name(text: str | Path) -> bool:
    """A bare word that is not an existing file: looked up in the zoo rather than on disk."""
    if not isinstance(text, str) or "\n" in text or "/" in text or "\\" in text:
        return False
    return not text.endswith((".yaml", ".yml")) and not Path(text).exists()


def names() -> list[str]:
    return list(registry())


__all__ = ["ZooModel", "is_name", "names", "published", "registry", "resolve", "specs_dir"]
