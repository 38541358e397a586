"""The only two ways this project reads a pickle, both unable to run code.

- ``torch.load(..., weights_only=True)``: torch's restricted unpickler (tensors and plain
  containers only); anything else in the file makes it raise, and we re-raise CheckpointError.
  A file whose only other globals are plain numpy arrays (a training run's saved numpy RNG state)
  is read with exactly those allow-listed (``torch.serialization.safe_globals``), nothing more.
- nanoGPT's char-level ``meta.pkl``: our own Unpickler whose ``find_class`` refuses every global,
  so only the pickle opcodes for dicts, lists, strings and numbers can run; the result is then
  checked to hold nothing but dicts, lists, strings and ints.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import torch

from ..basic_tokenizers import CharTokenizer
from ..checkpoint import CheckpointError

MAX_META_BYTES = 10_000_000


def _refusal_reason(exc: Exception) -> str:
    """Our own words for why torch's restricted unpickler refused a file.

    Torch's text advises an unsafe retry, which we never want to pass on.
    """
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"but got <class '([\w.]+)'>", text)
    if found:
        return f"it refers to the Python object {found.group(1)}"
    return "it is not a readable torch checkpoint: corrupt, truncated or another kind of file"


# numpy dtypes of plain numbers: the classes an unpickled numpy array's dtype may have (no object dtype).
NUMPY_NUMBER_DTYPES = tuple(
    f"{kind}{bits}DType"
    for kind, sizes in (("Int", (8, 16, 32, 64)), ("UInt", (8, 16, 32, 64)), ("Float", (16, 32, 64)))
    for bits in sizes
) + ("BoolDType",)


def _numpy_array_globals() -> tuple[dict[str, object], list]:
    """The globals a pickled plain numpy array refers to, and the dtype classes it may be built as.

    The globals go by the names files use (numpy 1 and 2).
    """
    import numpy as np  # noqa: PLC0415 (only for files that hold numpy arrays)

    core = np._core if hasattr(np, "_core") else np.core
    names = {
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
        "numpy._core.multiarray._reconstruct": core.multiarray._reconstruct,
        "numpy.core.multiarray._reconstruct": core.multiarray._reconstruct,
    }
    dtypes = getattr(np, "dtypes", None)
    classes = [getattr(dtypes, name) for name in NUMPY_NUMBER_DTYPES if hasattr(dtypes, name)]
    return names, classes


def _load_weights_only(path: Path):
    """torch.load(weights_only=True), with plain numpy arrays allow-listed.

    They are allowed only when they are the only other globals in the file (checked before anything
    is unpickled).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        names, dtype_classes = _numpy_array_globals()
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if not needed or any(name not in names for name in needed):
            raise
        with torch.serialization.safe_globals([(names[name], name) for name in needed] + dtype_classes):
            return torch.load(path, map_location="cpu", weights_only=True)


def load_torch_file(path: Path) -> dict:
    """Reads a torch-pickled checkpoint with weights_only=True; it must hold a dict."""
    try:
        data = _load_weights_only(path)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... all mean "refused"
        raise CheckpointError(
            f"{path} was refused by the safe loader ({_refusal_reason(exc)}); "
            "only tensors and plain containers are accepted, and nothing in it was run."
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} holds a {type(data).__name__}; expected a dict like nanoGPT's ckpt.pt."
        )
    return data


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Refuses every class and function: only plain data opcodes can be unpickled."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}; only plain data is allowed")


def _is_plain(value, depth: int = 0) -> bool:
    if depth > 4:
        return False
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return True
    if isinstance(value, list):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def read_meta_pkl(path: Path) -> CharTokenizer:
    """nanoGPT's char-level ``meta.pkl`` ({"vocab_size", "itos", "stoi"}) -> CharTokenizer."""
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_META_BYTES:
            raise CheckpointError(f"{path} is larger than {MAX_META_BYTES} bytes; not a char vocabulary.")
        meta = _NoGlobalsUnpickler(io.BytesIO(raw)).load()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path} is not a plain-data pickle ({exc}); it was not loaded.") from None
    if not _is_plain(meta) or not isinstance(meta, dict) or not isinstance(meta.get("itos"), dict):
        raise CheckpointError(
            f"{path} must hold only dicts, lists, strings and ints with an 'itos' dict (nanoGPT's meta.pkl)."
        )
    return char_tokenizer_of(meta, path)


def char_tokenizer_of(meta: dict, path: Path) -> CharTokenizer:
    """The CharTokenizer of a nanoGPT-style vocabulary ``{"vocab_size", "itos": {id: char}, ...}``."""
    itos = meta["itos"]
    if sorted(itos) != list(range(len(itos))) or not all(
        isinstance(c, str) and len(c) == 1 for c in itos.values()
    ):
        raise CheckpointError(f"{path}: 'itos' must map ids 0..n-1 to single characters.")
    if meta.get("vocab_size", len(itos)) != len(itos):
        raise CheckpointError(
            f"{path}: vocab_size {meta.get('vocab_size')} does not match {len(itos)} 'itos' entries."
        )
    try:
        return CharTokenizer("".join(itos[i] for i in range(len(itos))))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}.") from None
