"""The `archc` command line. Each command lives in its own module and registers itself here.

Commands import torch only inside their handlers, so `archc check` and `archc zoo` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

# The CLI process is ours: skip pydantic's plugin scan (30 ms of importlib.metadata per run).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from archc import __version__
from archc.errors import SpecError

# Modules that define `register(subparsers)`; each adds one or more subcommands.
COMMAND_MODULES = (
    "archc.commands.compile",
)
OPTIONAL_COMMAND_MODULES = (
    "archc.train.cli",
    "archc.commands.report",
    "archc.commands.diagram",
    "archc.commands.zoo",
    "archc.commands.experiments",
    "archc.commands.docs",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archc",
        description="Compile declarative YAML architecture specs into PyTorch modules; report, diagram and train them.",
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for name in OPTIONAL_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
