"""Safe handling of uploaded checkpoint bytes, and ``safe_name``.

An upload gets a size limit, a fixed file name in a fresh private directory, and removal afterwards;
``safe_name`` is the one rule for names made safe for files and folders.

The name a user gives an upload is only ever used to read its extension, which must be one of
``UPLOAD_SUFFIXES``; it never becomes part of a path, so ``../`` or absolute names cannot escape.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .checkpoint import ARCHIVE_SUFFIXES, CheckpointError

UPLOAD_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".json", ".pkl")
UPLOAD_STEM = "upload"  # every upload is stored as upload<suffix>, whatever the user called it
SAFE_NAME_PUNCTUATION = "._-"  # what safe_name keeps besides ASCII letters and digits


def safe_name(text: str, also: str = "") -> str:
    """``text`` with every run of unsafe characters replaced by one ``_``.

    Safe are letters, digits, ``.``, ``_`` and ``-`` (and those in ``also``); callers trim and bound
    the result.

    Args:
        text: a name a person gave (a run name, a model name, an uploaded file's name).
        also: more characters to keep (e.g. ``" ,/"`` for a name that is only displayed).
    """
    return re.sub(f"[^A-Za-z0-9{re.escape(SAFE_NAME_PUNCTUATION + also)}]+", "_", str(text))


def check_upload_size(n_bytes: int, limit: int, name: str = "the upload") -> None:
    """Raises CheckpointError when an upload of ``n_bytes`` exceeds ``limit`` bytes.

    Args:
        n_bytes: size of the upload in bytes.
        limit: the largest size accepted, in bytes.
        name: how to call the upload in the message (e.g. its file name; only displayed).
    """
    if n_bytes > limit:
        raise CheckpointError(
            f"{name} is {_human_size(n_bytes)}; uploads are limited to {_human_size(limit)}, "
            "so load a larger checkpoint from a local path instead."
        )


def upload_suffix(name_or_suffix: str) -> str:
    """The lower-case extension of an upload (``".pt"``), checked against ``UPLOAD_SUFFIXES``.

    Args:
        name_or_suffix: the uploaded file's name as the user gave it, or just its extension.

    Raises:
        CheckpointError: for archives (zipped checkpoint directories are not supported) and for
            any other extension.
    """
    text = str(name_or_suffix)
    suffix = "." + text.rsplit(".", 1)[-1].lower() if "." in text else ""
    if suffix in ARCHIVE_SUFFIXES:
        raise CheckpointError(
            f"{text} is an archive, and zipped or tarred checkpoint directories are not supported; "
            "upload a single .safetensors, .pt, .pth or .bin file, or load the unpacked directory by path."
        )
    if suffix not in UPLOAD_SUFFIXES:
        raise CheckpointError(
            f"{text} has an unsupported extension; upload one of {', '.join(UPLOAD_SUFFIXES)}."
        )
    return suffix


class TemporaryCheckpoint:
    """An uploaded file saved as ``<fresh private directory>/upload<suffix>``.

    A context manager that removes the directory on exit. ``path`` is what to give ``load_model``.
    """

    def __init__(self, data: bytes, suffix: str):
        self.suffix = upload_suffix(suffix)
        self.directory = Path(tempfile.mkdtemp(prefix="attnres-upload-"))  # mode 0700
        self.path = self.directory / (UPLOAD_STEM + self.suffix)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(self.path, flags, 0o600), "wb") as file:
                file.write(data)
        except OSError as exc:
            self.cleanup()
            raise CheckpointError(
                f"The upload could not be saved to {self.directory} ({exc.strerror})."
            ) from None

    def cleanup(self) -> None:
        """Removes the directory and everything in it (safe to call twice)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> TemporaryCheckpoint:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()


def save_upload(data: bytes, suffix: str, limit: int | None = None) -> TemporaryCheckpoint:
    """Writes uploaded bytes under a fixed safe name in a fresh temporary directory.

    Args:
        data: the uploaded bytes.
        suffix: the extension the upload claims (``".pt"``) or the user's file name, from which
            only the extension is taken.
        limit: when given, the largest size accepted in bytes (see ``check_upload_size``).

    Returns:
        A TemporaryCheckpoint; use it in a ``with`` block so the directory is removed afterwards.

    Raises:
        CheckpointError: the upload is too large, an archive, or has an unsupported extension.
    """
    if limit is not None:
        check_upload_size(len(data), limit, name=f"the uploaded file ({str(suffix)[:80]})")
    return TemporaryCheckpoint(bytes(data), suffix)


def _human_size(n_bytes: int) -> str:
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    size = n_bytes / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
