"""The character tokenizer stored in config.json (DESIGN.md §2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnres.tokenizer import CharTokenizer, tokenizer_from_dict

VOCAB = "\n !,.?abcdefghijklmnopqrstuvwxyz"


def test_round_trip_on_known_text():
    tok = CharTokenizer(VOCAB)
    text = "to be, or not to be?\nthat is the question."
    ids = tok.encode(text)
    assert ids[:3] == [VOCAB.index("t"), VOCAB.index("o"), VOCAB.index(" ")]
    assert tok.decode(ids) == text and len(tok) == len(VOCAB)


@given(st.text(alphabet=VOCAB, max_size=50))
def test_round_trip_on_any_text_of_the_vocabulary(text):
    tok = CharTokenizer(VOCAB)
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_report(text).unknown == ()


def test_unknown_characters_become_unk_and_are_reported():
    tok = CharTokenizer(VOCAB)
    report = tok.encode_report("Hi, Zoë; Zoë!")
    assert tok.unk == "?"
    assert report.unknown == (";", "H", "Z", "ë")  # each once, sorted
    assert tok.decode(report.ids) == "?i, ?o?? ?o?!"
    assert tok.encode("Hi, Zoë; Zoë!") == report.ids


@pytest.mark.parametrize("vocab,unk", [("ab? c", "?"), ("ab c", " "), ("abc", "a")])
def test_unk_is_question_mark_then_space_then_first_character(vocab, unk):
    tok = CharTokenizer(vocab)
    assert tok.unk == unk
    assert tok.encode("x") == [vocab.index(unk)]


def test_from_text_and_dict_round_trip():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab == " dehlorw"
    again = tokenizer_from_dict(tok.to_dict())
    assert again.vocab == tok.vocab and again.encode("lower") == tok.encode("lower")
    assert tokenizer_from_dict(None) is None


def test_decode_marks_ids_outside_the_vocabulary():
    tok = CharTokenizer("ab")
    assert tok.decode([0, 1, 2, -1]) == "ab\ufffd\ufffd"
    assert tok.token_strings([1, 0]) == ["b", "a"]


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "char", "vocab": ""},
        {"type": "char", "vocab": "aa"},
        {"type": "char"},
        {"type": "bpe"},
        "char",
    ],
)
def test_bad_tokenizer_entries_raise_value_error(spec):
    with pytest.raises(ValueError):
        tokenizer_from_dict(spec)
