"""``python -m app.serve [streamlit run options]``: the dashboard, warmed up as the server starts.

The same server as ``streamlit run app/streamlit_app.py [options]`` (same process, same options and
``.streamlit/config.toml``), plus a background thread that imports what the pages need and computes
the default view (``app.warm``) while the server comes up, so the first visitor does not wait for it.
The warm-up begins once the server is up, so ``/_stcore/health`` answers as early as it does
without it (and the two never import the same modules at the same time).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ENTRY = Path(__file__).resolve().parent / "streamlit_app.py"
REPO_ROOT = ENTRY.parent.parent


def _server_up() -> bool:
    from streamlit.runtime import Runtime, RuntimeState  # noqa: PLC0415

    return Runtime.exists() and Runtime.instance().state not in (RuntimeState.INITIAL, RuntimeState.STOPPING)


def _warm() -> None:
    while not _server_up():
        time.sleep(0.05)
    from app import warm  # noqa: PLC0415 (the point: imported here, off the server's thread)

    warm.start().join()


def main(argv: list[str] | None = None) -> None:
    """Starts the warm-up thread, then runs ``streamlit run app/streamlit_app.py`` with ``argv``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see streamlit_app.py)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from streamlit.web import cli  # noqa: PLC0415 (Streamlit's own modules first, then the warm-up)

    threading.Thread(target=_warm, name="attnres-warm-imports", daemon=True).start()
    sys.argv = ["streamlit", "run", str(ENTRY), *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
