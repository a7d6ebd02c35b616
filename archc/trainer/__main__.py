"""`python -m archc.trainer SPEC [flags]`: `archc train` on its own, what `--nproc` runs under torchrun."""

import argparse
import sys

from archc.errors import SpecError
from archc.trainer.cli import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m archc.trainer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *sys.argv[1:]])
    try:
        return int(args.handler(args))
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


sys.exit(main())
