"""Text sources for a corpus sweep, cut into fixed-length token sequences.

A source is the held-out plays of the training corpus (the default: ``attnres.data``'s validation
works, which no shipped model trained on), a ``.txt`` file, a folder of ``.txt`` files (recursively,
sorted by path), a ``.jsonl`` file with one JSON object per line holding a text field, or a Hugging
Face ``datasets`` dataset saved on disk with ``save_to_disk`` (only when the package is installed;
nothing is ever downloaded).

Each document is encoded with the model's own tokenizer and cut into non-overlapping windows of
``seq_len`` tokens; a document shorter than one window gives one shorter sequence (at least 2 tokens).
When there are more windows than ``max_seqs``, that many are taken evenly spaced over all of them,
so a short sweep still covers every document.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HELDOUT = "heldout"  # the name of the default source
MAX_CHARS = 50_000_000  # at most this much text is read from one source
_CHUNK = 1_000_000  # a long document is encoded in pieces of about this many characters


class CorpusError(ValueError):
    """A corpus cannot be used; the message is one sentence a person can act on."""


@dataclass(frozen=True)
class Sequences:
    """Token sequences of one source, right-padded to a common length."""

    name: str  # the source as given (path or "heldout")
    tokens: torch.Tensor  # [N, T] long, padded with 0
    lengths: torch.Tensor  # [N] long, real tokens per sequence (2..T)
    total_windows: int  # windows the source had before max_seqs was applied
    digest: str  # sha256 of the token ids and lengths: what the results rest on

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @classmethod
    def from_tokens(cls, tokens: torch.Tensor, lengths=None, name: str = "token ids") -> Sequences:
        """Sequences from token ids [N, T] (lengths [N]: real tokens per row; default all T)."""
        tokens = torch.as_tensor(tokens).long().cpu()
        if tokens.dim() != 2 or tokens.shape[1] < 2 or tokens.shape[0] < 1:
            raise CorpusError(f"token ids must be [N, T] with N >= 1 and T >= 2, got {tuple(tokens.shape)}")
        lengths = (
            torch.full((tokens.shape[0],), tokens.shape[1]) if lengths is None else torch.as_tensor(lengths)
        )
        lengths = lengths.long().cpu()
        if (
            lengths.shape != (tokens.shape[0],)
            or int(lengths.min()) < 2
            or int(lengths.max()) > tokens.shape[1]
        ):
            raise CorpusError("every sequence needs between 2 and T real tokens")
        tokens = tokens * (torch.arange(tokens.shape[1])[None] < lengths[:, None])
        digest = hashlib.sha256(tokens.numpy().tobytes() + lengths.numpy().tobytes()).hexdigest()
        return cls(name, tokens, lengths, tokens.shape[0], digest)

    @property
    def n_tokens(self) -> int:
        """Real tokens over all sequences."""
        return int(self.lengths.sum())


def _heldout() -> Iterator[str]:
    from attnres.data import heldout_texts

    try:
        yield from heldout_texts()
    except RuntimeError as error:
        raise CorpusError(str(error)) from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CorpusError(f"the corpus file {path.name} cannot be read ({error.strerror})") from None


def _jsonl(path: Path, field: str) -> Iterator[str]:
    try:
        lines = path.open(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CorpusError(f"the corpus file {path.name} cannot be read ({error.strerror})") from None
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise CorpusError(f"line {number} of {path.name} is not JSON") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise CorpusError(f"line {number} of {path.name} has no text field {field!r}")
            yield record[field]


def _hf_dataset(path: Path, field: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise CorpusError(
            f"{path.name} looks like a saved Hugging Face dataset, but the datasets package is not installed"
        ) from None
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        split = next((s for s in ("validation", "test", "train") if s in data), next(iter(data)))
        data = data[split]
    if field not in data.column_names:
        raise CorpusError(f"the dataset {path.name} has no column {field!r}")
    for record in data:
        yield record[field]


def documents(source: str | Path | None = None, text_field: str = "text") -> Iterator[str]:
    """The documents of a source, in a fixed order.

    Args:
        source: None or "heldout" for the held-out plays; else a path (see the module docstring).
        text_field: the field holding the text in a .jsonl line or a dataset row.

    Raises:
        CorpusError: the source does not exist or cannot be read.
    """
    if source is None or str(source) == HELDOUT:
        yield from _heldout()
        return
    path = Path(source).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        yield from _hf_dataset(path, text_field)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise CorpusError(f"the folder {path.name} has no .txt files")
        for file in files:
            yield _read(file)
    elif path.suffix == ".jsonl" and path.is_file():
        yield from _jsonl(path, text_field)
    elif path.is_file():
        yield _read(path)
    else:
        raise CorpusError(
            f"no corpus at {path}: give a .txt or .jsonl file, a folder of .txt files or 'heldout'"
        )


def _encode(tokenizer, text: str) -> list[int]:
    """The ids of a document, encoded in pieces split at newlines when it is long."""
    ids, start = [], 0
    while start < len(text):
        end = len(text) if len(text) - start <= _CHUNK else text.rfind("\n", start, start + _CHUNK) + 1
        end = end if end > start else start + _CHUNK
        ids += tokenizer.encode(text[start:end])
        start = end
    return ids


def _windows(model, source, seq_len: int, text_field: str) -> list[np.ndarray]:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise CorpusError("this model has no tokenizer, so a text corpus cannot be encoded")
    windows, chars = [], 0
    for text in documents(source, text_field):
        text = text[: MAX_CHARS - chars]
        chars += len(text)
        ids = np.asarray(_encode(tokenizer, text), dtype=np.int64)
        full = len(ids) // seq_len
        if full:
            windows += list(ids[: full * seq_len].reshape(full, seq_len))
        elif len(ids) >= 2:
            windows.append(ids)
        if chars >= MAX_CHARS:
            break
    return windows


def load_sequences(
    model,
    source: str | Path | None = None,
    seq_len: int | None = None,
    max_seqs: int = 128,
    text_field="text",
) -> Sequences:
    """Encodes a source with the model's tokenizer and cuts it into sequences.

    Args:
        model: the ``attnres.Model`` whose tokenizer and context apply.
        source: see ``documents``.
        seq_len: tokens per sequence (default and at most the model's context).
        max_seqs: at most this many sequences, evenly spaced over the source's windows.
        text_field: see ``documents``.

    Raises:
        CorpusError: the source is unreadable, or yields no sequence of 2 or more tokens.
    """
    block = model.config.block_size
    seq_len = block if seq_len is None else int(seq_len)
    if not 2 <= seq_len <= block:
        raise CorpusError(f"the sequence length must be between 2 and the model's context of {block} tokens")
    if max_seqs < 1:
        raise CorpusError("a corpus sweep needs at least one sequence (max_seqs >= 1)")
    windows = _windows(model, source, seq_len, text_field)
    if not windows:
        raise CorpusError("the corpus has no text of at least two tokens")
    total = len(windows)
    if total > max_seqs:
        picks = np.unique(np.linspace(0, total - 1, max_seqs).round().astype(np.int64))
        windows = [windows[i] for i in picks]
    lengths = torch.tensor([len(w) for w in windows])
    tokens = torch.zeros(len(windows), int(lengths.max()), dtype=torch.long)
    for row, window in enumerate(windows):
        tokens[row, : len(window)] = torch.from_numpy(window)
    seqs = Sequences.from_tokens(tokens, lengths, str(source or HELDOUT))
    return Sequences(seqs.name, seqs.tokens, seqs.lengths, total, seqs.digest)
