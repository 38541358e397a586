"""The library against bad checkpoints: a corpus of them, each built here in tmp_path.

Every case must make ``load_model`` raise ``CheckpointError`` (never another exception type, never a
hang, never code execution) with one sentence that names the file and the problem. The ``.pt``
cases hold both for the stub importer and for a real one that reads with
``torch.load(weights_only=True)``: they only pin the exception type, the file name and the sentence.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import re
import signal
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnres import CheckpointError, Model, ModelConfig, load_model, save_model
from attnres.checkpoint import MAX_MESSAGE_CHARS
from attnres.safety import check_upload_size
from attnres.tokenizer import CharTokenizer

VOCAB = "\n !',.?abcdefgh"  # 15 characters
MARKER = "pwned.marker"  # what the malicious pickles try to create, in tmp_path


# --------------------------------------------------------------------------- builders


def good_checkpoint(tmp_path: Path, name: str = "ckpt") -> Path:
    """A tiny valid Block AttnRes checkpoint directory (the corpus mutates copies of it)."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=8, residual="block", attnres_block_size=1
    )
    return save_model(Model(config, CharTokenizer(VOCAB)), tmp_path / name)


def edit_config(tmp_path: Path, **changes) -> Path:
    """A good checkpoint whose config.json has ``changes`` applied (value None deletes a key)."""
    directory = good_checkpoint(tmp_path)
    raw = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    (directory / "config.json").write_text(json.dumps(raw))
    return directory


def write_config_text(tmp_path: Path, text: str | bytes) -> Path:
    directory = good_checkpoint(tmp_path)
    data = text.encode() if isinstance(text, str) else text
    (directory / "config.json").write_bytes(data)
    return directory


def edit_weights(tmp_path: Path, change: Callable[[dict], None]) -> Path:
    """A good checkpoint whose tensors dict went through ``change`` (in place)."""
    directory = good_checkpoint(tmp_path)
    tensors = load_file(str(directory / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def write_weights_bytes(tmp_path: Path, make: Callable[[bytes], bytes]) -> Path:
    """A good checkpoint whose model.safetensors bytes are replaced by ``make(original)``."""
    directory = good_checkpoint(tmp_path)
    path = directory / "model.safetensors"
    path.write_bytes(make(path.read_bytes()))
    return directory


def raw_safetensors(header, body: bytes = b"", length: int | None = None) -> Callable[[bytes], bytes]:
    """Bytes of a safetensors file with an arbitrary header (object, or raw bytes) and length."""

    def make(_original: bytes) -> bytes:
        head = header if isinstance(header, bytes) else json.dumps(header).encode()
        return struct.pack("<Q", len(head) if length is None else length) + head + body

    return make


def loose_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """A single file with no config.json beside it."""
    directory = tmp_path / "loose"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def random_bytes(n: int = 4096) -> bytes:
    generator = torch.Generator().manual_seed(n)
    return torch.randint(0, 256, (n,), generator=generator, dtype=torch.uint8).numpy().tobytes()


class TouchOnUnpickle:
    """Unpickling this calls pathlib.Path.touch on the marker: code execution if anyone unpickles."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


class SystemOnUnpickle:
    """Unpickling this runs a shell command that creates the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class Arbitrary:
    """An ordinary Python object: weights_only loading must refuse it, not import this module."""

    def __init__(self):
        self.payload = {"set": {1, 2}, "bytes": b"\x00", "complex": 1j}


def torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def archive(tmp_path: Path, kind: str) -> Path:
    """A good checkpoint directory packed as a zip or tar file, given as the checkpoint."""
    directory = good_checkpoint(tmp_path)
    target = tmp_path / "loose" / f"ckpt.{kind}"
    target.parent.mkdir(exist_ok=True)
    if kind == "zip":
        with zipfile.ZipFile(target, "w") as zf:
            for file in directory.iterdir():
                zf.write(file, f"ckpt/{file.name}")
    else:
        with tarfile.open(target, "w:gz" if kind == "tar.gz" else "w") as tf:
            tf.add(directory, "ckpt")
    return target


def symlink_loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.pt"
    os.mkfifo(path)
    return path


def replaced(name: str, make: Callable[[Path], None], **config_changes) -> Callable[[Path], Path]:
    """Builder of a good checkpoint whose file ``name`` is replaced by ``make(path)``."""

    def build(tmp_path: Path) -> Path:
        directory = edit_config(tmp_path, **config_changes)
        path = directory / name
        path.unlink(missing_ok=True)
        make(path)
        return directory

    return build


def unreadable(tmp_path: Path) -> Path:
    directory = good_checkpoint(tmp_path)
    path = directory / "model.safetensors"
    path.chmod(0)
    try:
        path.read_bytes()
    except PermissionError:
        return directory
    pytest.skip("running as root: chmod 000 does not stop root from reading the file")


def only_weights_dir(tmp_path: Path) -> Path:
    directory = good_checkpoint(tmp_path)
    (directory / "config.json").unlink()
    return directory


def oversized(tmp_path: Path) -> Path:
    """The app's upload guard: a 4 KiB file against a 1 KiB limit."""
    path = loose_file(tmp_path, "big.safetensors", random_bytes(4096))
    check_upload_size(path.stat().st_size, 1024, name=path.name)
    return path


def big_config(n_bytes: int) -> str:
    return '{"format": "attnres-lens", "pad": "' + "x" * n_bytes + '"}'


def deep_json(depth: int) -> str:
    return '{"format": "attnres-lens", "vocab_size": ' + "[" * depth + "]" * depth + "}"


def drop(name: str) -> Callable[[dict], None]:
    return lambda tensors: tensors.pop(name)


def fill(name: str, value: float) -> Callable[[dict], None]:
    return lambda tensors: tensors[name].fill_(value)


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(tmp_path)`` returns what is given to load_model."""

    id: str
    build: Callable[[Path], Path]
    names: str  # must appear in the message (the file or directory at fault)
    problem: str | None = None  # regex (case-insensitive) the message must match; None: any wording


def loose(name: str, data: bytes, problem: str | None = None) -> Case:
    return Case(f"loose-{name}", lambda t: loose_file(t, name, data), name, problem)


def config_case(id_: str, problem: str, **changes) -> Case:
    return Case(id_, lambda t: edit_config(t, **changes), "config.json", problem)


def config_text(id_: str, text: str | bytes, problem: str) -> Case:
    return Case(id_, lambda t: write_config_text(t, text), "config.json", problem)


def weights(id_: str, change, problem: str) -> Case:
    return Case(id_, lambda t: edit_weights(t, change), "model.safetensors", problem)


def weight_bytes(id_: str, make, problem: str = "safetensors") -> Case:
    return Case(id_, lambda t: write_weights_bytes(t, make), "model.safetensors", problem)


def evil(name: str, cls, save=pickle.dumps) -> Case:
    return Case(f"evil-{cls.__name__}-{name}", lambda t: loose_file(t, name, save(cls(t / MARKER))), name)


WTE = "wte.weight"
SUPPORTED_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".json", ".pkl")
CASES: list[Case] = [
    # empty and random files, alone and inside an otherwise good checkpoint
    loose("empty.safetensors", b""),
    *(loose(f"junk{ext}", random_bytes()) for ext in SUPPORTED_SUFFIXES),
    weight_bytes("weights-empty", lambda b: b""),
    weight_bytes("weights-random", lambda b: random_bytes()),
    # safetensors: truncated, lying headers
    weight_bytes("st-truncated-header", lambda b: b[:20]),
    weight_bytes("st-truncated-length", lambda b: b[:5]),
    weight_bytes("st-truncated-body", lambda b: b[:-64]),
    weight_bytes(
        "st-offsets-beyond-file",
        raw_safetensors({WTE: {"dtype": "F32", "shape": [16, 8], "data_offsets": [0, 512]}}, b"\0" * 16),
    ),
    weight_bytes(
        "st-offsets-reversed",
        raw_safetensors({WTE: {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
    ),
    weight_bytes(
        "st-shape-vs-offsets",
        raw_safetensors({WTE: {"dtype": "F32", "shape": [2**40, 2**30], "data_offsets": [0, 8]}}, b"\0" * 8),
    ),
    weight_bytes("st-header-length-beyond-file", raw_safetensors({}, b"", length=10**6)),
    weight_bytes("st-header-length-2**63", raw_safetensors({}, b"", length=2**63)),
    weight_bytes("st-header-not-json", raw_safetensors(b"{not json at all" + b" " * 16)),
    weight_bytes("st-header-not-utf8", raw_safetensors(b"\xff\xfe\xfd" * 8)),
    weight_bytes("st-header-array", raw_safetensors([1, 2, 3])),
    weight_bytes(
        "st-wrong-dtype",
        raw_safetensors({WTE: {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    ),
    weight_bytes(
        "st-bad-shape-type",
        raw_safetensors({WTE: {"dtype": "F32", "shape": "big", "data_offsets": [0, 8]}}, b"\0" * 8),
    ),
    # config.json
    config_text("config-empty", "", "JSON"),
    config_text("config-invalid-json", "{'vocab_size': 16,", "JSON"),
    config_text("config-not-utf8", b'{"format": "attnres-lens", \xff\xfe}', "JSON|UTF"),
    config_text("config-array", "[1, 2, 3]", "object"),
    config_text("config-string", '"attnres-lens"', "object"),
    config_text("config-null", "null", "object"),
    config_text("config-deeply-nested", deep_json(100_000), "JSON|nest|deep"),
    Case("config-20MB", lambda t: write_config_text(t, big_config(20_000_000)), "config.json", "larger"),
    config_case("config-missing-vocab", "vocab_size", vocab_size=None),
    config_case("config-missing-many", "missing", n_head=None, d_model=None, residual=None),
    config_case("config-string-size", "vocab_size", vocab_size="16"),
    config_case("config-bool-size", "n_layer", n_layer=True),
    config_case("config-float-size", "d_model", d_model=8.0),
    config_case("config-dict-size", "block_size", block_size={"value": 8}),
    config_case("config-negative-size", "n_head", n_head=-2),
    config_case("config-zero-size", "block_size", block_size=0),
    config_case("config-huge-size", "vocab_size", vocab_size=10**12),
    config_case("config-huge-int", "vocab_size", vocab_size=10**400),
    config_case("config-unknown-residual", "residual", residual="magic"),
    config_case("config-residual-list", "residual", residual=["block"]),
    config_case("config-unknown-format-version", "format_version", format_version=2),
    config_case("config-bool-format-version", "format_version", format_version=True),
    config_case("config-unknown-format", "format", format="pytorch"),
    config_case("config-block-without-S", "attnres_block_size", attnres_block_size=None),
    config_case("config-block-S-zero", "attnres_block_size", attnres_block_size=0),
    config_case("config-block-S-string", "attnres_block_size", attnres_block_size="4"),
    config_case("config-d-not-divisible", "divisible", d_model=8, n_head=3),
    config_case("config-norm-eps-string", "norm_eps", norm_eps="1e-6"),
    config_case("config-norm-eps-negative", "norm_eps", norm_eps=-1.0),
    config_case("config-bias-string", "bias", bias="false"),
    config_case("config-tie-string", "tie_embeddings", tie_embeddings="no"),
    config_case("config-norm-eps-nan", "norm_eps", norm_eps=float("nan")),
    # the tokenizer entry
    config_case("tokenizer-number", "tokenizer", tokenizer=5),
    config_case("tokenizer-unknown-type", "tokenizer", tokenizer={"type": "bpe"}),
    config_case("tokenizer-vocab-list", "tokenizer", tokenizer={"type": "char", "vocab": ["a", "b"]}),
    config_case("tokenizer-repeated-char", "tokenizer", tokenizer={"type": "char", "vocab": "abca"}),
    config_case("tokenizer-too-large", "tokenizer", tokenizer={"type": "char", "vocab": VOCAB + "ijklm"}),
    config_case(
        "tokenizer-hf-path-traversal",
        "tokenizer",
        tokenizer={"type": "hf", "file": "../../../../etc/passwd", "path": "../../../../etc/passwd"},
    ),
    # weights that disagree with the config
    Case("shape-vocab-mismatch", lambda t: edit_config(t, vocab_size=17), "model.safetensors", "shape"),
    Case("shape-d-model-mismatch", lambda t: edit_config(t, d_model=16), "model.safetensors", "shape"),
    Case(
        "size-config-implies-huge",
        lambda t: edit_config(t, vocab_size=10**6, d_model=4096, n_head=2),
        "model.safetensors",
        "config",
    ),
    weights("weights-missing-key", drop("blocks.0.attn_res.query"), "missing"),
    weights("weights-extra-key", lambda t: t.update(extra=torch.zeros(2)), "unexpected"),
    weights("weights-int-dtype", lambda t: t.update({WTE: t[WTE].to(torch.int32)}), "dtype"),
    weights("weights-bool-dtype", lambda t: t.update({WTE: t[WTE] > 0}), "dtype"),
    weights("weights-complex-dtype", lambda t: t.update({WTE: t[WTE].to(torch.complex64)}), "dtype"),
    weights(
        "weights-float8-nan",
        lambda t: t.update({WTE: t[WTE].fill_(float("nan")).to(torch.float8_e4m3fn)}),
        "NaN",
    ),
    weights("weights-nan", fill("blocks.0.attn_res.query", float("nan")), "NaN"),
    weights("weights-inf", fill(WTE, float("inf")), "Inf"),
    weights("weights-newline-key", lambda t: t.update({"evil\nkey\r\x1b[31m": torch.zeros(1)}), "unexpected"),
    # archives, directories, links, special files
    Case("zip-checkpoint", lambda t: archive(t, "zip"), "ckpt.zip", "zip|archive"),
    Case("tar-checkpoint", lambda t: archive(t, "tar"), "ckpt.tar", "tar|archive"),
    Case("tar-gz-checkpoint", lambda t: archive(t, "tar.gz"), "ckpt.tar.gz", "tar|archive"),
    Case("empty-directory", lambda t: (t / "nothing").mkdir() or t / "nothing", "nothing"),
    Case("directory-without-config", only_weights_dir, "ckpt"),
    Case("config-is-directory", lambda t: (t / "d" / "config.json").mkdir(parents=True) or t / "d", "d"),
    Case("weights-is-directory", lambda t: _weights_dir(t), "model.safetensors"),
    Case("symlink-loop", symlink_loop, "a", "link|loop"),
    Case("missing-path", lambda t: t / "no-such-checkpoint", "no-such-checkpoint", "exist"),
    Case("nul-in-path", lambda t: Path(str(t / "bad") + "\0name"), "bad", None),
    Case("fifo", fifo, "pipe.pt", "regular file"),
    Case("config-fifo", replaced("config.json", os.mkfifo), "config.json", "regular file"),
    Case("weights-fifo", replaced("model.safetensors", os.mkfifo), "model.safetensors", "regular file"),
    Case(
        "config-link-to-dev-zero",
        replaced("config.json", lambda p: p.symlink_to("/dev/zero")),
        "config.json",
        "regular file",
    ),
    Case(
        "tokenizer-hf-fifo",
        replaced("tokenizer.json", os.mkfifo, tokenizer={"type": "hf"}),
        "config.json",
        "tokenizer",
    ),
    Case(
        "tokenizer-hf-garbage",
        replaced("tokenizer.json", lambda p: p.write_bytes(random_bytes()), tokenizer={"type": "hf"}),
        "config.json",
        "tokenizer",
    ),
    Case("unreadable-weights", unreadable, "model.safetensors"),
    Case("oversized-upload", oversized, "big.safetensors", "limit"),
    # pickles: arbitrary objects and code that would run on unpickling
    loose("objects.pt", torch_saved({"model": Arbitrary(), "config": {"n_layer": 1}})),
    loose("tensors-only.pt", torch_saved({"weight": torch.zeros(2)})),
    loose("list.pt", torch_saved([1, 2, 3])),
    evil("touch.pt", TouchOnUnpickle),
    evil("touch.pkl", TouchOnUnpickle),
    evil("system.pth", SystemOnUnpickle),
    evil("system.bin", SystemOnUnpickle),
    evil("torch-zip-touch.pt", TouchOnUnpickle, torch_saved),
    evil("torch-zip-system.pt", SystemOnUnpickle, torch_saved),
    Case("evil-nanogpt-dir", lambda t: _evil_in_dir(t, "ckpt.pt"), "ckpt"),
    Case("evil-as-weights", lambda t: _evil_weights(t), "model.safetensors", "safetensors"),
]


def _weights_dir(tmp_path: Path) -> Path:
    directory = good_checkpoint(tmp_path)
    (directory / "model.safetensors").unlink()
    (directory / "model.safetensors").mkdir()
    return directory


def _evil_weights(tmp_path: Path) -> Path:
    return write_weights_bytes(tmp_path, lambda _: pickle.dumps(TouchOnUnpickle(tmp_path / MARKER)))


def _evil_in_dir(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / name).write_bytes(torch_saved(SystemOnUnpickle(tmp_path / MARKER)))
    return directory


# --------------------------------------------------------------------------- tests


def assert_clear_sentence(message: str, names: str) -> None:
    """One line, one sentence, no traceback, names the file."""
    assert message.strip(), "empty message"
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message and 'File "' not in message, message
    assert len(message) <= 800, message
    assert message.endswith("."), message
    assert names in message, f"{names!r} not named in: {message}"


@pytest.fixture
def no_hang():
    """Fails a case that blocks (e.g. reads a FIFO) instead of hanging the suite."""

    def timeout(signum, frame):
        raise TimeoutError("load_model hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_corpus_is_large_and_its_base_is_valid(tmp_path):
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    model = load_model(good_checkpoint(tmp_path))
    assert model.config.residual == "block"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_clear_sentence(case: Case, tmp_path, no_hang):
    with pytest.raises(CheckpointError) as caught:
        load_model(case.build(tmp_path))
    message = str(caught.value)
    assert_clear_sentence(message, case.names)
    if case.problem:
        assert re.search(case.problem, message, re.IGNORECASE), message
    assert not (tmp_path / MARKER).exists(), "unpickling ran code from the checkpoint"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_allow_nonfinite_loads_damaged_weights(tmp_path, value):
    directory = edit_weights(tmp_path, fill("blocks.0.mlp_res.query", value))
    model = load_model(directory, allow_nonfinite=True)
    query = model.state_dict()["blocks.0.mlp_res.query"]
    assert query.shape == (8,)
    assert not torch.isfinite(query).any()


def test_pickle_payloads_really_execute_when_unpickled(tmp_path):
    """Guards the corpus: the payloads would have created the marker, had anyone unpickled them."""
    for cls in (TouchOnUnpickle, SystemOnUnpickle):
        marker = tmp_path / f"{cls.__name__}.marker"
        pickle.loads(pickle.dumps(cls(marker)))  # noqa: S301 (deliberately, in a sandboxed tmp_path)
        assert marker.exists()


def test_every_message_is_made_one_clean_line():
    message = str(CheckpointError("a\x1b[1m bold\x1b[0m name\nwith\rbreaks\x00 " + "x" * 5000))
    assert message.startswith("a bold name\\nwith\\rbreaks\\x00 xxx")
    assert message.endswith(".") and len(message) <= MAX_MESSAGE_CHARS + 1
    assert str(CheckpointError(message)) == message  # normalising twice changes nothing
