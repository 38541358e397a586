"""Prompt handling: errors, replaced characters, truncation, huge pastes, batching."""

import time

import numpy as np
import pytest
import torch

from attnres.basic_tokenizers import CharTokenizer, IdTokenizer
from probes import Batch, PromptError, depth_weights, encode_prompt, make_batch
from probes.prompt import token_strings


def test_empty_and_whitespace_prompts_raise_a_sentence(make_model):
    model = make_model()
    for text in ("", "   \n\t"):
        with pytest.raises(PromptError, match="empty"):
            encode_prompt(model, text)


def test_unknown_characters_are_replaced_with_a_notice(make_model):
    prompt = encode_prompt(make_model(), "abZ€c")
    assert prompt.tokens == ("a", "b", "?", "?", "c")
    assert len(prompt.notices) == 1 and "2 character(s)" in prompt.notices[0]


def test_long_prompt_keeps_the_last_block_size_tokens(make_model):
    model = make_model()  # block_size 16
    prompt = encode_prompt(model, "a" * 20 + "bcdefgh")
    assert len(prompt.ids) == 16 and prompt.text == "a" * 9 + "bcdefgh"
    assert any("only its last 16 tokens" in n for n in prompt.notices)


def test_hundred_thousand_characters_in_bounded_time(make_model):
    model = make_model()
    start = time.perf_counter()
    prompt = encode_prompt(model, "abc\u2603" * 25_000)
    assert time.perf_counter() - start < 1.0
    assert len(prompt.ids) == 16 and len(prompt.notices) == 2


def test_batch_is_right_padded_with_a_mask(make_model):
    batch = make_batch(make_model(), ["abcd", "ab"])
    assert batch.tokens.shape == (2, 4)
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    ids = make_batch(make_model(), torch.tensor([1, 2, 3]))
    assert isinstance(ids, Batch) and ids.tokens.shape == (1, 3) and bool(ids.mask.all())


@pytest.mark.parametrize("rule", ["prenorm", "full", "block"])
def test_padding_never_changes_a_prompts_numbers(make_model, rule):
    model = make_model(rule, 2 if rule == "block" else None)
    together = depth_weights(model, ["abcdefgh", "ab"])
    alone = depth_weights(model, "ab")
    torch.testing.assert_close(
        torch.tensor(together.per_token[1, :2]), torch.tensor(alone.per_token[0]), equal_nan=True
    )
    assert (together.per_token[1, 2:] != together.per_token[1, 2:]).all()  # NaN at padding


class _DecodeOnly:
    """A tokenizer that can only decode: each id is its letter of the alphabet."""

    def decode(self, ids):
        return "".join(chr(ord("a") + i) for i in ids)


def test_token_strings_of_each_kind_of_tokenizer():
    ids = np.array([2, 0, 1])
    assert token_strings(CharTokenizer("ab\n"), ids) == ("\n", "a", "b")
    assert token_strings(IdTokenizer(300, mode="bytes"), [65, 10, 200]) == ("A", "\\x0a", "\\xc8")
    assert token_strings(IdTokenizer(300), torch.tensor([7, 250])) == ("7", "250")
    assert token_strings(_DecodeOnly(), ids) == ("c", "a", "b")
    assert token_strings(None, ids) == ("", "", "")
    assert token_strings(None, ids, missing="#{}") == ("#2", "#0", "#1")
