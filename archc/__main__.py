"""`python -m archc` (also what `torchrun -m archc train ...` runs)."""

import sys

from archc.cli import main

sys.exit(main())
