"""``python -m optbench``: the command line (:mod:`optbench.cli`)."""

import sys

from optbench.cli import main

sys.exit(main())
