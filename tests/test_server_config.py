"""The Streamlit server listens on localhost only and bounds uploads."""

from __future__ import annotations

from pathlib import Path

import tomllib

CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"


def test_server_binds_localhost_and_limits_uploads():
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["address"] == "127.0.0.1"
    assert isinstance(server["maxUploadSize"], int) and 1 <= server["maxUploadSize"] <= 1024  # MB
    assert server.get("enableXsrfProtection", True) is True
