"""The tokenizers that need no library, and the Encoding every tokenizer returns.

Character level (the shipped models): ``{"type": "char", "vocab": "<every character, in id order>"}``.
Raw ids, for a model whose tokenizer is unknown: ``{"type": "ids", "mode": "numbers" | "bytes",
"vocab_size": V}`` reads the prompt as token ids typed as numbers, or as its UTF-8 bytes.
A character outside the vocabulary is replaced by the tokenizer's ``unk`` character (``"?"``
when the vocabulary has one, else a space, else the first character); ``encode_report``
tells which characters were replaced so a caller can show a notice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Encoding:
    """A text's token ids and the pieces of it that no id stands for."""

    ids: list[int]
    unknown: tuple[str, ...]  # distinct characters that were not in the vocabulary


class CharTokenizer:
    """One id per character."""

    kind = "char"

    def __init__(self, vocab: str):
        if not isinstance(vocab, str) or not vocab:
            raise ValueError("a char tokenizer needs a non-empty 'vocab' string")
        if len(set(vocab)) != len(vocab):
            raise ValueError("a char tokenizer's 'vocab' repeats a character")
        self.vocab = vocab
        self.stoi = {ch: i for i, ch in enumerate(vocab)}
        self.unk = next((c for c in "? " if c in self.stoi), vocab[0])

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary = the sorted distinct characters of text."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.vocab)

    def encode_report(self, text: str) -> Encoding:
        """Ids of text plus the characters that had to be replaced by ``unk``."""
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        unk_id = self.stoi[self.unk]
        return Encoding([self.stoi.get(ch, unk_id) for ch in text], tuple(unknown))

    def encode(self, text: str) -> list[int]:
        """Token ids of text (unknown pieces replaced, see ``encode_report``)."""
        return self.encode_report(text).ids

    def decode(self, ids) -> str:
        """The text of a sequence of ids."""
        return "".join(self.vocab[int(i)] if 0 <= int(i) < len(self.vocab) else "\ufffd" for i in ids)

    def token_strings(self, ids) -> list[str]:
        """Display string of each id (for axis labels)."""
        return [self.decode([i]) for i in ids]

    def to_dict(self) -> dict:
        """The ``tokenizer`` entry of config.json that rebuilds this tokenizer."""
        return {"type": "char", "vocab": self.vocab}


class IdTokenizer:
    """No vocabulary: the prompt *is* the ids, typed as numbers ("464 3290 318") or as UTF-8 bytes.

    A number that is not an id below ``vocab_size`` (or a byte at or above it) is replaced by id 0
    and reported as unknown, like a character outside a CharTokenizer's vocabulary.
    """

    kind = "ids"
    MODES = ("numbers", "bytes")

    def __init__(self, vocab_size: int, mode: str = "numbers"):
        if mode not in self.MODES:
            raise ValueError(f"an ids tokenizer's mode must be one of {self.MODES}, got {mode!r}")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"an ids tokenizer needs a positive integer vocab_size, got {vocab_size!r}")
        self.vocab_size, self.mode = vocab_size, mode

    def __len__(self) -> int:
        return self.vocab_size if self.mode == "numbers" else min(256, self.vocab_size)

    def encode_report(self, text: str) -> Encoding:
        """Ids of text plus the pieces (numbers or characters) that are no id of this model."""
        if self.mode == "bytes":
            ids = [b if b < self.vocab_size else None for b in text.encode("utf-8")]
            unknown = {ch for ch in text if max(ch.encode("utf-8")) >= self.vocab_size}
        else:
            pieces = re.split(r"[\s,]+", text.strip()) if text.strip() else []
            ids = [int(p) if _is_id(p, self.vocab_size) else None for p in pieces]
            unknown = {p for p, i in zip(pieces, ids, strict=True) if i is None}
        return Encoding([0 if i is None else i for i in ids], tuple(sorted(unknown)))

    def encode(self, text: str) -> list[int]:
        """Token ids of text (unknown pieces replaced, see ``encode_report``)."""
        return self.encode_report(text).ids

    def decode(self, ids) -> str:
        """The text of a sequence of ids."""
        if self.mode == "bytes":
            return bytes(int(i) % 256 for i in ids).decode("utf-8", errors="replace")
        return " ".join(str(int(i)) for i in ids)

    def token_strings(self, ids) -> list[str]:
        r"""Display string of each id: the number, or the byte as a character (``\\xNN`` if unprintable)."""
        if self.mode == "numbers":
            return [str(int(i)) for i in ids]
        return [chr(int(i)) if 32 <= int(i) < 127 else f"\\x{int(i) % 256:02x}" for i in ids]

    def to_dict(self) -> dict:
        """The ``tokenizer`` entry of config.json that rebuilds this tokenizer."""
        return {"type": "ids", "mode": self.mode, "vocab_size": self.vocab_size}


def _is_id(piece: str, vocab_size: int) -> bool:
    return piece.isascii() and piece.isdigit() and len(piece) <= 12 and int(piece) < vocab_size
