"""`python -m hub.cli` runs the `gridwatch` command."""

import sys

from hub.cli import main

sys.exit(main())
