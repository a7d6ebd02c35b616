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

# Each command and the module whose `register(subparsers)` adds it, in the order of `archc --help`.
COMMANDS = {
    "check": "archc.commands.compile",
    "build": "archc.commands.compile",
    "export": "archc.commands.compile",
    "train": "archc.trainer.cli",
    "evaluate": "archc.trainer.cli",
    "report": "archc.commands.report",
    "diagram": "archc.commands.diagram",
    "zoo": "archc.commands.zoo",
    "sweep": "archc.commands.experiments",
    "compare": "archc.commands.experiments",
    "html": "archc.commands.experiments",
    "ops": "archc.commands.docs",
    "schema": "archc.commands.docs",
}


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, given a known command, a parser with only its module's commands:
    importing every command module (the trainer's config, the experiment tools) costs `archc check`
    a sixth of its run time."""
    parser = argparse.ArgumentParser(
        prog="archc",
        description="Compile declarative YAML architecture specs into PyTorch modules; report, diagram and train them.",
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    args = make_parser(command).parse_args(argv)
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
