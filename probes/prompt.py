"""Turning text into model input: one prompt (with notices a person can read) or a batch of them.

Prompts of unequal length are right-padded in a batch. Attention is causal, so padding after a
prompt never changes what the model computes at that prompt's real tokens; every probe averages
over real tokens only (``Batch.mask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# At most this many characters per context token are encoded, so a huge paste costs bounded time
# and memory; only the last block_size tokens are ever used.
MAX_CHARS_PER_TOKEN = 32


class PromptError(ValueError):
    """A prompt cannot be used; the message is one sentence a person can act on."""


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it."""

    text: str  # the text the ids encode (after truncation to the context)
    ids: tuple[int, ...]  # T token ids, 1 <= T <= block_size
    tokens: tuple[str, ...]  # T display strings, one per id
    notices: tuple[str, ...]  # sentences about what was changed (unknown characters, truncation)

    def __post_init__(self):
        if not self.ids:
            raise PromptError("a prompt needs at least one token")
        if len(self.tokens) != len(self.ids):
            raise ValueError(f"{len(self.tokens)} token strings for {len(self.ids)} ids")

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        return {
            "text": self.text,
            "ids": list(self.ids),
            "tokens": list(self.tokens),
            "notices": list(self.notices),
        }


@dataclass(frozen=True)
class Batch:
    """Token ids of one or more prompts, right-padded to a common length (torch, on the model's device)."""

    tokens: Tensor  # [B, T] long; padded positions hold id 0
    mask: Tensor  # [B, T] bool, True at real tokens
    prompts: tuple[Prompt, ...] | None  # B prompts when built from text, else None

    def __post_init__(self):
        if self.tokens.dim() != 2 or self.tokens.shape != self.mask.shape:
            raise ValueError(
                f"tokens {tuple(self.tokens.shape)} and mask {tuple(self.mask.shape)} must both be [B, T]"
            )
        if not bool(self.mask[:, 0].all()):
            raise PromptError("every prompt in a batch needs at least one token")


def encode_prompt(model, text: str) -> Prompt:
    """Encodes text with the model's tokenizer, keeping what fits the context.

    Args:
        model: an ``attnres.Model`` with a ``tokenizer``.
        text: the prompt; any length (only the last ``block_size`` tokens are kept).

    Returns:
        The Prompt, with a notice for each replaced character set and for truncation.

    Raises:
        PromptError: the prompt is empty or whitespace only, or the model has no tokenizer.
    """
    if not isinstance(text, str) or not text.strip():
        raise PromptError("the prompt is empty; type some text for the model to read")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise PromptError("this model has no tokenizer, so text cannot be encoded; pass token ids")
    block_size = model.config.block_size
    notices = []
    char_budget = block_size * MAX_CHARS_PER_TOKEN
    clipped = text[-char_budget:] if len(text) > char_budget else text
    ids, unknown = _encode(tokenizer, clipped)
    if unknown:
        shown = "".join(unknown[:20]) + ("…" if len(unknown) > 20 else "")
        notices.append(f"{len(unknown)} character(s) outside the vocabulary were replaced: {shown!r}")
    if len(ids) > block_size or len(clipped) < len(text):
        notices.append(
            f"the prompt is longer than the model's context of {block_size} tokens; "
            f"only its last {block_size} tokens are used"
        )
        ids = ids[-block_size:]
    if not ids:
        raise PromptError("the prompt encodes to no tokens; try different text")
    return Prompt(tokenizer.decode(ids), tuple(ids), token_strings(tokenizer, ids), tuple(notices))


def _encode(tokenizer, text: str) -> tuple[list[int], tuple[str, ...]]:
    """(ids, distinct unknown characters), using ``encode_report`` when the tokenizer has one."""
    report = getattr(tokenizer, "encode_report", None)
    if report is not None:
        encoding = report(text)
        return list(encoding.ids), tuple(encoding.unknown)
    return list(tokenizer.encode(text)), ()


def token_strings(tokenizer, ids, missing: str = "") -> tuple[str, ...]:
    """The display string of each token id.

    The tokenizer's own ``token_strings`` when it has one, else each id decoded on its own.

    Args:
        tokenizer: the model's tokenizer, or None.
        ids: token ids (a list, a tensor row or a numpy array of integers).
        missing: shown for every id when there is no tokenizer; ``{}`` in it becomes the id
            (``"#{}"`` shows ``#17``).

    Returns:
        One string per id.
    """
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return tuple(missing.format(i) for i in ids)
    strings = getattr(tokenizer, "token_strings", None)
    return tuple(strings(ids)) if strings is not None else tuple(tokenizer.decode([i]) for i in ids)


def make_batch(model, inputs) -> Batch:
    """Builds a Batch on the model's device from text, prompts or token ids.

    Args:
        model: the model the batch is for.
        inputs: a Batch; a str or Prompt; a sequence of str / Prompt; or token ids as a
            LongTensor [T] or [B, T] (all real tokens).

    Returns:
        The Batch (prompts of unequal length right-padded with id 0, masked out).
    """
    device = next(model.parameters()).device
    if isinstance(inputs, Batch):
        return Batch(inputs.tokens.to(device), inputs.mask.to(device), inputs.prompts)
    if isinstance(inputs, Tensor):
        tokens = inputs.long().to(device)
        tokens = tokens[None] if tokens.dim() == 1 else tokens
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise PromptError(f"token ids must be [T] or [B, T] with T >= 1, got {tuple(inputs.shape)}")
        return Batch(tokens, torch.ones_like(tokens, dtype=torch.bool), None)
    items = [inputs] if isinstance(inputs, (str, Prompt)) else list(inputs)
    if not items:
        raise PromptError("no prompts were given")
    prompts = tuple(p if isinstance(p, Prompt) else encode_prompt(model, p) for p in items)
    return _pad(prompts, device)


def _pad(prompts: Sequence[Prompt], device) -> Batch:
    length = max(len(p.ids) for p in prompts)
    tokens = torch.zeros(len(prompts), length, dtype=torch.long)
    mask = torch.zeros(len(prompts), length, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        tokens[row, : len(prompt.ids)] = torch.tensor(prompt.ids)
        mask[row, : len(prompt.ids)] = True
    return Batch(tokens.to(device), mask.to(device), tuple(prompts))
