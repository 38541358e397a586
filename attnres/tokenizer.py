"""Tokenizers described by the ``tokenizer`` entry of ``config.json``: which class reads which entry.

``{"type": "char", ...}``: ``CharTokenizer`` (the shipped models) and ``{"type": "ids", ...}``:
``IdTokenizer`` (raw ids), both in basic_tokenizers.py; ``{"type": "hf", "file": ...}``:
``HFTokenizer`` (hf_tokenizer.py, imported checkpoints). All return an ``Encoding`` (ids plus the
pieces that became the unknown token).
"""

from __future__ import annotations

from .basic_tokenizers import CharTokenizer, Encoding, IdTokenizer
from .hf_tokenizer import HFTokenizer

__all__ = ["CharTokenizer", "Encoding", "HFTokenizer", "IdTokenizer", "tokenizer_from_dict"]


def tokenizer_from_dict(spec: dict | None, directory=None):
    """Builds the tokenizer a config's ``tokenizer`` entry describes (None if there is none)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("the 'tokenizer' entry must be an object")
    kind = spec.get("type")
    if kind == "char":
        return CharTokenizer(spec.get("vocab"))
    if kind == "ids":
        return IdTokenizer(spec.get("vocab_size"), spec.get("mode", "numbers"))
    if kind == "hf":
        return HFTokenizer.from_spec(spec, directory)
    raise ValueError(f"unknown tokenizer type {kind!r} (known: 'char', 'hf', 'ids')")
