"""The `archc` command line. Each command lives in its own module under archc/commands/ and
registers itself here; errors are caught once, in `main`, and printed by one formatter.

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
from archc.errors import ArchcError, did_you_mean

# Each command and the module whose `register(subparsers)` adds it, in the order of `archc --help`.
COMMANDS = {
    "check": "archc.commands.compile",
    "build": "archc.commands.compile",
    "export": "archc.commands.compile",
    "train": "archc.commands.train",
    "evaluate": "archc.commands.train",
    "predict": "archc.commands.predict",
    "report": "archc.commands.report",
    "diagram": "archc.commands.diagram",
    "zoo": "archc.commands.zoo",
    "sweep": "archc.commands.experiments",
    "compare": "archc.commands.experiments",
    "html": "archc.commands.experiments",
    "ops": "archc.commands.docs",
    "schema": "archc.commands.docs",
}
USAGE_ERROR = 2  # argparse's exit code for a bad command line


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, given a known command, a parser with only its module's commands:
    importing every command module (the trainer's config, the experiment tools) costs `archc check`
    a sixth of its run time."""
    parser = argparse.ArgumentParser(
        prog="archc",
        description=(
            "Compile declarative YAML architecture specs into "
            "PyTorch modules; report, diagram and train them."
        ),
        epilog="`archc COMMAND --help` describes a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; mistakes exit with status 2 after the
    usage of the command they concern."""
    command = next((word for word in argv if not word.startswith("-")), None)
    if command is None and not {"-h", "--help", "--version"} & set(argv):
        make_parser().print_help()  # bare `archc`: the list of commands
        raise SystemExit(USAGE_ERROR)
    if command is not None and command not in COMMANDS:
        parser = argparse.ArgumentParser(
            prog="archc", usage="%(prog)s [-h] [--version] COMMAND ..."
        )
        parser.print_usage(sys.stderr)
        print(
            f"archc: error: unknown command '{command}'{did_you_mean(command, COMMANDS)}; "
            f"`archc --help` lists the commands",
            file=sys.stderr,
        )
        raise SystemExit(USAGE_ERROR)
    parser = make_parser(command)
    args, extra = parser.parse_known_args(argv)
    if extra:
        subparser = _subparser(parser, args.command)
        subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed command: the one place where errors become messages and exit codes."""
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ArchcError as exc:
        report(exc.render())
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return 0
        where = f"{exc.filename}: " if exc.filename else ""
        report(f"error: {where}{exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        report("interrupted")
        return 130


def report(message: str) -> None:
    """Print an error on stderr; a worker of a distributed run names its rank."""
    rank = os.environ.get("RANK", "0")
    print(f"rank {rank}: {message}" if rank != "0" else message, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
