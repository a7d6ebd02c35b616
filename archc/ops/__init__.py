"""The op registry. Built-in ops register on import; plugins register from outside the package.

A plugin is any importable module that defines `Op` subclasses decorated with `@register`. It is
loaded only when the user names it (`--plugin module` or `archc.load(..., plugins=[...])`) or
installs it under the `archc.ops` entry-point group: a spec can never cause an import.
"""

from __future__ import annotations

import importlib

from archc.errors import SpecError
from archc.ops.base import Args, Call, Op, OpError, Shape

REGISTRY: dict[str, Op] = {}
_CANONICAL: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: make an op available to specs under its name and aliases."""
    op = cls()
    for key in (cls.name, *cls.aliases):
        existing = REGISTRY.get(key)
        if existing is not None and type(existing) is not cls:
            raise ValueError(
                f"op name '{key}' is already registered by {type(existing).__qualname__}"
            )
        REGISTRY[key] = op
    _CANONICAL[cls.name] = op
    return cls


def get(name: str) -> Op | None:
    """The op registered under `name`; installed plugins are scanned on the first unknown name."""
    op = REGISTRY.get(name)
    if op is None and not _entry_points_loaded:
        load_entry_point_plugins()
        op = REGISTRY.get(name)
    return op


def canonical() -> dict[str, Op]:
    """Each op once, under its canonical name (for docs and schemas)."""
    return dict(sorted(_CANONICAL.items()))


def load_plugin(module: str) -> None:
    """Import a user-named plugin module; its @register decorators add its ops."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a bug in the plugin: a clear error either way
        raise SpecError(f"cannot import plugin '{module}': {type(exc).__name__}: {exc}") from None


_entry_points_loaded = False


def load_entry_point_plugins() -> None:
    """Load ops from installed packages that declare the `archc.ops` entry-point group."""
    from importlib.metadata import entry_points

    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="archc.ops"):
        try:
            ep.load()
        except Exception as exc:  # an installed plugin's bug must not become a traceback here
            dist = ep.dist.name if ep.dist else "an installed package"
            raise SpecError(
                f"cannot load op plugin '{ep.value}' (archc.ops entry point of {dist}): {exc}"
            ) from None


from archc.ops import (  # noqa: E402, F401
    activation,
    attention,
    conv,
    linear,
    merge,
    norm,
    parameter,
    partition_attention,
    pool,
    resample,
    slicing,
    tensor,
    window_attention,
)

__all__ = [
    "REGISTRY",
    "Args",
    "Call",
    "Op",
    "OpError",
    "Shape",
    "canonical",
    "get",
    "load_plugin",
    "register",
]
