"""``python -m probes.report``: an alias of ``python -m report``, which lives above probes and figures."""

import sys

from report.cli import main, model_names

__all__ = ["main", "model_names"]

if __name__ == "__main__":
    sys.exit(main())
