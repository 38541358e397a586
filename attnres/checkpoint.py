"""Checkpoint I/O in our own format (DESIGN.md §2): a directory with ``config.json``,
``model.safetensors`` and a ``README.md`` model card. Nothing here ever unpickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .model import Model
from .tokenizer import tokenizer_from_dict

FORMAT = "attnres-lens"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
MAX_CONFIG_BYTES = 10_000_000
REQUIRED = ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "norm_eps", "residual")


class CheckpointError(Exception):
    """A checkpoint could not be loaded; the message is one sentence a person can act on."""


def save_model(model: Model, directory, card: str | None = None, dtype: torch.dtype | None = None,
               extra_config: dict | None = None) -> Path:
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


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def load_model(path, device="cpu", allow_nonfinite: bool = False) -> Model:
    """Loads a checkpoint (our directory, a file inside it, or an importable foreign format).

    Returns the model in eval mode on ``device``. Raises CheckpointError with one sentence
    for anything invalid; never executes code from the checkpoint.
    """
    path = _existing(path)
    directory = path if path.is_dir() else path.parent
    config_path = directory / CONFIG_FILE
    if not _is_ours(config_path):
        from .importers import import_foreign  # noqa: PLC0415 (foreign formats are rarer)

        model = import_foreign(path, allow_nonfinite=allow_nonfinite)
    else:
        model = load_ours(directory, allow_nonfinite=allow_nonfinite)
    return model.to(device).eval()


def _existing(path) -> Path:
    try:
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; give a checkpoint directory or file.")
        path.resolve(strict=True)
    except CheckpointError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be resolved ({exc.__class__.__name__}: {exc}).") from None
    return path


def _is_ours(config_path: Path) -> bool:
    if not config_path.is_file():
        return False
    try:
        data = json.loads(config_path.read_bytes()[:MAX_CONFIG_BYTES])
    except (OSError, ValueError):
        return True  # a broken config.json: report it as ours, with the reason
    return isinstance(data, dict) and ("format" in data or "residual" in data)


def read_config(directory: Path) -> tuple[ModelConfig, dict]:
    """Parses and validates ``config.json``; returns the config and the raw dict."""
    config_path = directory / CONFIG_FILE
    try:
        if config_path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{config_path} is larger than {MAX_CONFIG_BYTES} bytes.")
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no {CONFIG_FILE}; a checkpoint directory needs one.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object, not {type(raw).__name__}.")
    if raw.get("format", FORMAT) != FORMAT:
        raise CheckpointError(f"{config_path} has format {raw.get('format')!r}; expected {FORMAT!r}.")
    version = raw.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path} has format_version {version!r}; this version of AttnRes Lens reads {FORMAT_VERSION}."
        )
    missing = [k for k in REQUIRED if k not in raw]
    if raw.get("residual") == "block" and "attnres_block_size" not in raw:
        missing.append("attnres_block_size")
    if missing:
        raise CheckpointError(f"{config_path} is missing required field(s): {', '.join(missing)}.")
    try:
        config = ModelConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: {exc}.") from None
    return config, raw


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Reads every tensor of a safetensors file; CheckpointError if it is unreadable."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the weights must be in a safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt files
        reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path} is not a valid safetensors file ({reason}).") from None


def load_ours(directory: Path, allow_nonfinite: bool = False) -> Model:
    """Loads a checkpoint directory in our format."""
    config, raw = read_config(directory)
    try:
        tokenizer = tokenizer_from_dict(raw.get("tokenizer"), directory)
    except (ValueError, TypeError, OSError) as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: bad 'tokenizer' entry ({exc}).") from None
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: the tokenizer has {len(tokenizer)} tokens but vocab_size is {config.vocab_size}."
        )
    tensors = read_safetensors(directory / WEIGHTS_FILE)
    return build_model(config, tensors, directory / WEIGHTS_FILE, tokenizer, allow_nonfinite)


def build_model(config: ModelConfig, tensors: dict, source: Path, tokenizer=None,
                allow_nonfinite: bool = False) -> Model:
    """Builds a Model from config and a state dict, checking names, shapes and values."""
    _check_size(config, tensors, source)
    with torch.device("meta"):
        model = Model(config, tokenizer)
    expected = {k: v for k, v in model.state_dict().items()}
    if config.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = ([f"missing {_few(missing)}"] if missing else []) + ([f"unexpected {_few(extra)}"] if extra else [])
        raise CheckpointError(f"{source} does not match its config ({'; '.join(parts)}).")
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: tensor {name} has shape {list(got.shape)} but the config implies {list(want.shape)}."
            )
        if not got.is_floating_point():
            raise CheckpointError(f"{source}: tensor {name} has dtype {got.dtype}; expected floating point.")
        if not allow_nonfinite and not torch.isfinite(got).all():
            raise CheckpointError(f"{source}: tensor {name} contains NaN or Inf values.")
    state = {k: tensors[k].float() for k in expected}
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.wte.weight
    return model.eval()


def _check_size(config: ModelConfig, tensors: dict, source: Path) -> None:
    """Refuses configs that would allocate far more than the weights file holds."""
    stored = sum(t.numel() for t in tensors.values())
    d, L = config.d_model, config.n_layer
    implied = config.vocab_size * d + config.block_size * d + L * (4 * d * d + 2 * d * config.hidden)
    if implied > 4 * stored + 1_000_000:
        raise CheckpointError(
            f"{source} holds {stored} numbers but its config implies about {implied}; the config does not match the weights."
        )


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
