"""Checkpoint primitives: our own format (DESIGN.md §2) and what every reader builds on.

Our checkpoint is a directory with ``config.json``, ``model.safetensors`` and a ``README.md`` model
card. Here: ``CheckpointError`` and its one-sentence messages, ``save_model``, the bounded readers
(``read_json``, ``read_config``, ``read_safetensors``), ``build_model`` (names, shapes and values
checked) and ``load_ours``. ``attnres.loader.load_model`` decides which reader a path goes to; the
importers of foreign formats (``attnres/importers/``) sit between the two. Nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .import_report import own_format_report
from .model import Model, empty_model
from .tokenizer import tokenizer_from_dict

FORMAT = "attnres-lens"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
SNAPSHOTS_DIR = "snapshots"  # a training run keeps earlier steps in <run>/snapshots/step-NNNNNN/
MAX_CONFIG_BYTES = 10_000_000
MAX_MESSAGE_CHARS = 600  # a CheckpointError message is one line a person reads
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar")
BOOL_FIELDS = ("bias", "tie_embeddings")
TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # e.g. the bold in torch.load's messages
REQUIRED = ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "norm_eps", "residual")


class CheckpointError(Exception):
    """A checkpoint could not be loaded; the message is one sentence a person can act on."""

    def __init__(self, message: str = "The checkpoint could not be loaded."):
        super().__init__(one_sentence(message))


def one_sentence(text) -> str:
    """Makes a message safe to show as one line.

    Terminal styling is dropped, other control characters (newlines in file or tensor names) are
    escaped, the length is bounded and it ends with a period.
    """
    text = TERMINAL_STYLE.sub("", str(text))
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 100] + " ... " + text[-94:]  # 599 characters
    return text if text.endswith((".", "!", "?")) else text + "."


def save_model(
    model: Model,
    directory,
    card: str | None = None,
    dtype: torch.dtype | None = None,
    extra_config: dict | None = None,
) -> Path:
    """Writes ``model`` as a checkpoint directory; returns its path.

    Args:
        model: the model to save (its ``tokenizer`` is stored in config.json when present).
        directory: target directory (created if missing).
        card: text of the model card ``README.md`` (not written when None).
        dtype: store the weights in this dtype (e.g. torch.float16 for snapshots).
        extra_config: more JSON entries for config.json (e.g. training provenance).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **model.config.to_dict()}
    if model.tokenizer is not None:
        config["tokenizer"] = model.tokenizer.to_dict()
        if hasattr(model.tokenizer, "write_files"):  # e.g. an HF tokenizer.json, named in config.json
            model.tokenizer.write_files(directory)
    config.update(extra_config or {})
    tensors = {}
    for name, tensor in model.state_dict().items():
        if model.config.tie_embeddings and name == "lm_head.weight":
            continue  # tied to wte.weight; safetensors stores no shared tensors
        tensor = tensor.detach().to("cpu")
        tensors[name] = (tensor.to(dtype) if dtype else tensor).contiguous()
    _atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
    _atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2)))
    if card is not None:
        _atomic_write(directory / CARD_FILE, lambda p: p.write_text(card))
    return directory


def snapshot_dir(run, step: int) -> Path:
    """Where a training run keeps its checkpoint of ``step``: ``<run>/snapshots/step-NNNNNN``."""
    return Path(run) / SNAPSHOTS_DIR / f"step-{step:06d}"


def run_snapshots(run, final_step: int | None = None) -> tuple[tuple[int, str], ...]:
    """(step, path) of every snapshot of a training run, then the final model (the run itself).

    Args:
        run: the run's checkpoint directory; its snapshots are the ``snapshots/step-N`` folders that
            hold a config.json, in name order.
        final_step: the final model's training step; by default one past the last snapshot's.

    Returns:
        The pairs, the final model last; empty when the run has no snapshots folder.
    """
    folder = Path(run) / SNAPSHOTS_DIR
    if not folder.is_dir():
        return ()
    found = []
    for path in sorted(folder.iterdir()):
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / CONFIG_FILE).is_file():
            found.append((int(match.group(1)), str(path)))
    final_step = final_step or (found[-1][0] + 1 if found else 0)
    return (*found, (final_step, str(run)))


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def read_json(config_path: Path):
    """The parsed JSON of a config file, read only if it is a regular file of bounded size."""
    if not config_path.is_file():
        if config_path.exists() or config_path.is_symlink():
            raise CheckpointError(
                f"{config_path} is not a regular file (or is a broken link); it must be JSON."
            )
        raise CheckpointError(f"{config_path.parent} has no {CONFIG_FILE}; a checkpoint directory needs one.")
    try:
        with open(config_path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{config_path} is larger than {MAX_CONFIG_BYTES} bytes.")
        return json.loads(data.decode("utf-8"))
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{config_path} is not valid JSON (it nests too deeply).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc}).") from None


def read_config(directory: Path) -> tuple[ModelConfig, dict]:
    """Parses and validates ``config.json``; returns the config and the raw dict."""
    config_path = directory / CONFIG_FILE
    raw = read_json(config_path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object, not {type(raw).__name__}.")
    _check_format(raw, config_path)
    _check_fields(raw, config_path)
    try:
        config = ModelConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: {exc}.") from None
    return config, raw


def _check_format(raw: dict, config_path: Path) -> None:
    """The format name and version, when given, must be ours."""
    if raw.get("format", FORMAT) != FORMAT:
        raise CheckpointError(f"{config_path} has format {raw.get('format')!r}; expected {FORMAT!r}.")
    version = raw.get("format_version", FORMAT_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path} has format_version {version!r}; "
            f"this version of AttnRes Lens reads {FORMAT_VERSION}."
        )


def _check_fields(raw: dict, config_path: Path) -> None:
    """Every required field is present (S too for Block) and the booleans are booleans."""
    missing = [k for k in REQUIRED if k not in raw]
    if raw.get("residual") == "block" and "attnres_block_size" not in raw:
        missing.append("attnres_block_size")
    if missing:
        raise CheckpointError(f"{config_path} is missing required field(s): {', '.join(missing)}.")
    for key in BOOL_FIELDS:
        if key in raw and not isinstance(raw[key], bool):
            raise CheckpointError(f"{config_path}: '{key}' must be true or false, got {raw[key]!r}.")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Reads every tensor of a safetensors file; CheckpointError if it is unreadable."""
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing or not a regular file; the weights must be a safetensors file."
        )
    _check_safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt files
        reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path} is not a valid safetensors file ({reason}).") from None


def _check_safetensors_header(path: Path) -> None:
    """Checks the 8-byte header length against the file size before the parser sees the file."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path} is not a valid safetensors file (only {size} bytes long).")
    (header_bytes,) = struct.unpack("<Q", head)
    if header_bytes > size - 8:
        raise CheckpointError(
            f"{path} is not a valid safetensors file (its header claims {header_bytes} bytes but the "
            f"file has {size}); it is truncated or corrupt."
        )


def load_ours(directory: Path, allow_nonfinite: bool = False) -> Model:
    """Loads a checkpoint directory in our format, with its ImportReport (every key maps to itself)."""
    config, raw = read_config(directory)
    try:
        tokenizer = tokenizer_from_dict(raw.get("tokenizer"), directory)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: bad 'tokenizer' entry ({exc}).") from None
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: the tokenizer has {len(tokenizer)} tokens "
            f"but vocab_size is {config.vocab_size}."
        )
    tensors = read_safetensors(directory / WEIGHTS_FILE)
    model = build_model(config, tensors, directory / WEIGHTS_FILE, tokenizer, allow_nonfinite)
    model.import_report = own_format_report(model, directory, tensors, raw)  # shown after any load
    return model


def build_model(
    config: ModelConfig, tensors: dict, source: Path, tokenizer=None, allow_nonfinite: bool = False
) -> Model:
    """Builds a Model from config and a state dict, checking names, shapes and values."""
    _check_size(config, tensors, source)
    model = empty_model(config, tokenizer)
    expected = {k: v for k, v in model.state_dict().items()}
    if config.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = ([f"missing {_few(missing)}"] if missing else []) + (
            [f"unexpected {_few(extra)}"] if extra else []
        )
        raise CheckpointError(f"{source} does not match its config ({'; '.join(parts)}).")
    state = {}
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: tensor {name} has shape {list(got.shape)} "
                f"but the config implies {list(want.shape)}."
            )
        if not got.is_floating_point():
            raise CheckpointError(f"{source}: tensor {name} has dtype {got.dtype}; expected floating point.")
        state[name] = got.float()  # float8 has no isfinite; fp16/bf16 are upcast anyway
        if not allow_nonfinite and not torch.isfinite(state[name]).all():
            raise CheckpointError(f"{source}: tensor {name} contains NaN or Inf values.")
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.wte.weight
    return model.eval()


def _check_size(config: ModelConfig, tensors: dict, source: Path) -> None:
    """Refuses configs that would allocate far more than the weights file holds."""
    stored = sum(t.numel() for t in tensors.values())
    d, L, heads = config.d_model, config.n_layer, config.n_head + config.kv_heads
    attention = 2 * heads * config.d_head * d  # q and o (n_head wide), k and v (n_kv_head wide)
    mlp = (3 if config.mlp == "gated" else 2) * d * config.hidden
    positions = config.block_size * d if config.learned_positions else 0
    implied = config.vocab_size * d + positions + L * (attention + mlp)
    if implied > 4 * stored + 1_000_000:
        raise CheckpointError(
            f"{source} holds {stored} numbers but its config implies about {implied}; "
            "the config does not match the weights."
        )


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
