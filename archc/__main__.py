"""`python -m archc` (also what `torchrun -m archc train ...` runs)."""

import sys

from archc.cli import main

if __name__ == "__main__":
    sys.exit(main())
