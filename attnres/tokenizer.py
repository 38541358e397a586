"""Tokenizers described by the ``tokenizer`` entry of ``config.json``.

Character level (the shipped models): ``{"type": "char", "vocab": "<every character, in id order>"}``.
A character outside the vocabulary is replaced by the tokenizer's ``unk`` character (``"?"``
when the vocabulary has one, else a space, else the first character); ``encode_report``
tells which characters were replaced so a caller can show a notice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Encoding:
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
        return self.encode_report(text).ids

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] if 0 <= int(i) < len(self.vocab) else "\ufffd" for i in ids)

    def token_strings(self, ids) -> list[str]:
        """Display string of each id (for axis labels)."""
        return [self.decode([i]) for i in ids]

    def to_dict(self) -> dict:
        return {"type": "char", "vocab": self.vocab}


def tokenizer_from_dict(spec: dict | None, directory=None):
    """Builds the tokenizer a config's ``tokenizer`` entry describes (None if there is none)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("the 'tokenizer' entry must be an object")
    kind = spec.get("type")
    if kind == "char":
        return CharTokenizer(spec.get("vocab"))
    if kind == "hf":
        from .hf_tokenizer import HFTokenizer

        return HFTokenizer.from_spec(spec, directory)
    raise ValueError(f"unknown tokenizer type {kind!r} (known: 'char', 'hf')")
