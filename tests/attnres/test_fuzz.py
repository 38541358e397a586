"""Property tests of loading. Whatever config.json or safetensors bytes a checkpoint holds,
``load_model`` either returns a model or raises CheckpointError with one clean line."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnres import CheckpointError, Model, ModelConfig, load_model, save_model
from attnres.tokenizer import CharTokenizer

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = (
    "format",
    "format_version",
    "vocab_size",
    "block_size",
    "n_layer",
    "n_head",
    "d_model",
    "norm_eps",
    "residual",
    "attnres_block_size",
    "norm",
    "bias",
    "activation",
    "d_mlp",
    "tie_embeddings",
    "dropout",
    "depth_norm_eps",
    "tokenizer",
)
DTYPES = (
    "F64",
    "F32",
    "F16",
    "BF16",
    "F8_E4M3",
    "F8_E5M2",
    "I64",
    "I32",
    "I16",
    "I8",
    "U8",
    "BOOL",
    "U16",
    "U32",
    "U64",
    "F33",
    "",
    "f32",
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-3, 300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["prenorm", "full", "block", "attnres-lens", "char", "hf", "rmsnorm", "gelu"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def base() -> tuple[dict, bytes]:
    """The config dict and the weight bytes of a tiny valid Full AttnRes checkpoint."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=8, residual="full")
    with tempfile.TemporaryDirectory() as tmp:
        directory = save_model(Model(config, CharTokenizer("abcdefgh")), Path(tmp) / "ckpt")
        return json.loads((directory / "config.json").read_text()), (
            directory / "model.safetensors"
        ).read_bytes()


def load_or_clean_error(config_bytes: bytes, weight_bytes: bytes) -> None:
    """Writes a checkpoint from raw bytes and loads it; only CheckpointError may escape."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "config.json").write_bytes(config_bytes)
        (directory / "model.safetensors").write_bytes(weight_bytes)
        try:
            load_model(directory)
        except CheckpointError as exc:
            message = str(exc)
            assert message.endswith(".") and "\n" not in message and len(message) <= 800, message
            assert str(directory) in message, message


@FUZZ
@given(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    st.lists(st.sampled_from(FIELDS), max_size=3),
)
def test_config_fields_hold_any_json(base, replaced, extra, deleted):
    config = {**base[0], **extra, **replaced}
    for key in deleted:
        config.pop(key, None)
    load_or_clean_error(json.dumps(config).encode(), base[1])


@FUZZ
@given(json_values)
def test_config_is_any_json_value(base, value):
    load_or_clean_error(json.dumps(value).encode(), base[1])


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_is_any_bytes(base, data):
    load_or_clean_error(data, base[1])


tensor_entries = (
    st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(DTYPES) | json_values,
            "shape": st.lists(st.integers(-2, 2**40) | st.integers(0, 64), max_size=4) | json_values,
            "data_offsets": st.lists(st.integers(-2, 2**40) | st.integers(0, 600), min_size=2, max_size=2)
            | json_values,
        },
    )
    | json_values
)
headers = st.dictionaries(
    st.sampled_from(["wte.weight", "wpe.weight", "out_res.query", "__metadata__"]) | st.text(max_size=20),
    tensor_entries,
    max_size=4,
)


@FUZZ
@given(headers | json_values, st.binary(max_size=600), st.none() | st.integers(0, 2**64 - 1))
def test_safetensors_header_is_anything(base, header, body, claimed_length):
    head = json.dumps(header).encode()
    length = len(head) if claimed_length is None else claimed_length
    load_or_clean_error(json.dumps(base[0]).encode(), struct.pack("<Q", length) + head + body)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.none() | st.integers(0, 10**6),
)
def test_safetensors_bytes_flipped_or_cut(base, flips, cut):
    data = bytearray(base[1])
    for position, value in flips:
        data[position % len(data)] = value
    load_or_clean_error(json.dumps(base[0]).encode(), bytes(data[:cut]))
