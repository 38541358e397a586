"""Detection of foreign checkpoint formats and their import into our structure."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CheckpointError


def import_foreign(path: Path, allow_nonfinite: bool = False):
    """Imports a checkpoint that is not in our format, or raises CheckpointError."""
    raise CheckpointError(
        f"{path} is not an AttnRes Lens checkpoint (no config.json with 'format': 'attnres-lens' beside it)."
    )
