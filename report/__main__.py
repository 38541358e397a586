"""``python -m report``: the command-line report (report/cli.py)."""

import sys

from .cli import main

sys.exit(main())
