"""`python -m archc.trainer SPEC [flags]`: `archc train` on its own, what
`--nproc` runs under torchrun."""

import sys

from archc.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
