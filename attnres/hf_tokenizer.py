"""Hugging Face tokenizers (GPT-2's byte-level BPE and others), read offline from files.

The ``tokenizer`` entry of an imported checkpoint is ``{"type": "hf", "file": "tokenizer.json"}``:
the file lies in the checkpoint directory and is named, never given as a path. Same interface as
``CharTokenizer``; byte-level BPE has no unknown characters, so ``encode_report(...).unknown`` is ().
The ``tokenizers`` library is imported when a tokenizer is built, so that ``import attnres`` (the GPU
benchmark machine, training) needs torch and no app dependency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .basic_tokenizers import Encoding

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENIZER_BYTES = 100_000_000


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise ValueError(f"{path} is larger than {MAX_TOKENIZER_BYTES} bytes")
    return path.read_text(encoding="utf-8")


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` behind the CharTokenizer interface."""

    kind = "hf"

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.json_text = tokenizer.to_str()
        unk = getattr(tokenizer.model, "unk_token", None)
        self.unk_id = tokenizer.token_to_id(unk) if unk else None

    @classmethod
    def from_json_text(cls, text: str, origin) -> HFTokenizer:
        """Parses the text of a tokenizer.json (origin names it in errors)."""
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_str(text))
        except Exception as exc:  # the tokenizers library raises a bare Exception
            raise ValueError(f"{origin} is not a valid tokenizer.json ({str(exc)[:200]})") from None

    @classmethod
    def from_directory(cls, directory: Path) -> HFTokenizer | None:
        """tokenizer.json, else GPT-2's vocab.json + merges.txt, from a directory (None if neither)."""
        directory = Path(directory)
        if (directory / TOKENIZER_FILE).is_file():
            return cls.from_json_text(_read_text(directory / TOKENIZER_FILE), directory / TOKENIZER_FILE)
        vocab, merges = directory / "vocab.json", directory / "merges.txt"
        if not (vocab.is_file() and merges.is_file()):
            return None
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        try:
            json.loads(_read_text(vocab))
            bpe = models.BPE.from_file(str(vocab), str(merges))
        except Exception as exc:
            raise ValueError(
                f"{vocab} / {merges} are not a byte-level BPE vocabulary ({str(exc)[:200]})"
            ) from None
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's convention
        tokenizer.decoder = decoders.ByteLevel()
        return cls(tokenizer)

    @classmethod
    def from_spec(cls, spec: dict, directory) -> HFTokenizer:
        """Builds the tokenizer a config's ``{"type": "hf", "file": ...}`` entry describes."""
        name = spec.get("file", TOKENIZER_FILE)
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(
                f"the hf tokenizer 'file' must be a file name in the checkpoint directory, got {name!r}"
            )
        if directory is None:
            raise ValueError("an hf tokenizer needs the checkpoint directory to find its file")
        path = Path(directory) / name
        return cls.from_json_text(_read_text(path), path)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode_report(self, text: str) -> Encoding:
        """Ids of text plus the distinct pieces of text that became the unknown token."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        unknown = set()
        if self.unk_id is not None:
            unknown = {text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets, strict=True) if i == self.unk_id}
        return Encoding(list(enc.ids), tuple(sorted(unknown)))

    def encode(self, text: str) -> list[int]:
        """Token ids of text (see ``encode_report``)."""
        return self.encode_report(text).ids

    def decode(self, ids) -> str:
        """The text of a sequence of ids (special tokens kept)."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_strings(self, ids) -> list[str]:
        """Display string of each id (a byte-level piece of a character shows as U+FFFD)."""
        return [self.decode([i]) for i in ids]

    def to_dict(self) -> dict:
        """The ``tokenizer`` entry of config.json (the file is written by ``write_files``)."""
        return {"type": "hf", "file": TOKENIZER_FILE}

    def write_files(self, directory) -> None:
        """Writes tokenizer.json into a checkpoint directory (save_model calls this)."""
        (Path(directory) / TOKENIZER_FILE).write_text(self.json_text, encoding="utf-8")
