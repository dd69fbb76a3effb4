"""`python -m faultwatch`: the same as the `faultwatch` console script."""

import sys

from faultwatch.cli import main

sys.exit(main())
