"""The common trainer. Importing this package stays cheap: torch loads only when training starts.

The package itself is callable, `archc.train(spec_or_module, **config)`, because importing any
submodule (as the CLI does) binds the name `archc.train` to this package: a plain function of that
name in archc/__init__.py would be shadowed.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, spec_or_module: Any, **config: Any) -> dict[str, Any]:
        """Train and return the result record; see archc.train.api.train."""
        from archc.train.api import train

        return train(spec_or_module, **config)


sys.modules[__name__].__class__ = _CallablePackage
