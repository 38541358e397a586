"""``load_model``: which reader a checkpoint goes to. One format is one entry in a table below.

Imports run one way: ``checkpoint.py`` (primitives: CheckpointError, the bounded readers,
``build_model``, ``load_ours``) <- ``importers/`` (one module per foreign family) <- this module.
Detection order, first match wins (``FORMATS``):

  1. a directory (or a file in one) whose config.json is ours (``"format"`` or ``"residual"``);
  2. a torch-pickled file (``*.pt``, ``*.pth``, ``*.ckpt``, ``*.bin`` except ``pytorch_model.bin``),
     read with ``torch.load(weights_only=True)``; its state dict picks the layout (``TORCH_LAYOUTS``);
  3. a directory whose config.json has a ``model_type``: Hugging Face, by type (``HF_MODEL_TYPES``:
     gpt2, llama, qwen2, qwen3, mistral, fla's transformer; parallel-residual types are refused);
  4. weights with no architecture (a lone ``model.safetensors`` or ``pytorch_model.bin``, or a
     torch file holding a bare state dict) are refused with a sentence asking for the config.json;
  5. a directory holding ``ckpt.pt``: as 2;
  6. anything else is refused with a sentence saying what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import ARCHIVE_SUFFIXES, CONFIG_FILE, CheckpointError, load_ours, read_json
from .importers.attnresgpt import import_attnresgpt, is_attnresgpt
from .importers.common import state_dict_of
from .importers.fla import import_fla_transformer
from .importers.gpt2 import import_hf_gpt2, import_nanogpt, is_nanogpt
from .importers.jibran import import_jibran, is_jibran
from .importers.llama import LLAMA_TYPES, import_hf_llama
from .importers.lr_attnres import is_lr_attnres, refuse_lr_attnres
from .importers.nanogpt_attnres import import_nanogpt_attnres, is_nanogpt_attnres
from .importers.peers import import_repro, is_repro
from .importers.pickles import load_torch_file
from .importers.qwen3_attnres import import_qwen3_attnres
from .model import Model

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

# Hugging Face directories by config.json's model_type: reader(directory, allow_nonfinite).
HF_MODEL_TYPES: dict[str, Callable[[Path, bool], Model]] = {
    "gpt2": import_hf_gpt2,
    "transformer": import_fla_transformer,  # fla-org/flash-linear-attention's Transformer
    **dict.fromkeys(LLAMA_TYPES, import_hf_llama),  # llama, qwen2, qwen3, mistral
    "qwen3_attnres": import_qwen3_attnres,  # Zefan-Cai/open-attention-residuals
}
PARALLEL_RESIDUAL = (  # model types whose attention and MLP read the same input: refused
    "gpt_neox",
    "gptj",
    "phi",
)


@dataclass(frozen=True)
class Layout:
    """A state-dict layout of torch-pickled checkpoints.

    ``test(state)`` recognises it and ``read(path, data, allow_nonfinite)`` imports it (or refuses
    it with a CheckpointError).
    """

    name: str
    test: Callable[[dict], bool]
    read: Callable[[Path, dict, bool], Model]


TORCH_LAYOUTS = (
    Layout("nanogpt-attnres-repro", is_repro, import_repro),  # and its PreNorm twin
    Layout("nanoGPT AttnRes PR / nanoAttnRes", is_nanogpt_attnres, import_nanogpt_attnres),
    Layout("AttnResGPT-next-scale", is_attnresgpt, import_attnresgpt),
    Layout("jibran/Attention-Residuals", is_jibran, import_jibran),
    Layout("LR-AttnRes", is_lr_attnres, refuse_lr_attnres),  # refused, naming the setting
    Layout("nanogpt", is_nanogpt, import_nanogpt),
)


def load_model(path, device="cpu", allow_nonfinite: bool = False) -> Model:
    """Loads a checkpoint (our directory, a file inside it, or an importable foreign format).

    Args:
        path: a checkpoint directory or a file in one.
        device: where the model goes.
        allow_nonfinite: keep NaN/Inf weights (for the inspector) instead of refusing them.

    Returns:
        The model in eval mode on ``device``, with ``model.import_report`` set.

    Raises:
        CheckpointError: one sentence for anything invalid; nothing from the checkpoint is executed.
    """
    path = _existing(path)
    try:
        model = _load(path, allow_nonfinite)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 (a bad file must never surface as a bare traceback)
        reason = str(exc).splitlines()[0][:200] if str(exc).strip() else "no details"
        raise CheckpointError(f"{path} could not be loaded ({exc.__class__.__name__}: {reason}).") from None
    return model.to(device).eval()


def _load(path: Path, allow_nonfinite: bool) -> Model:
    if not path.is_dir():
        _check_plain_file(path)
    for entry in FORMATS:
        if entry.test(path):
            return entry.read(path, allow_nonfinite)
    raise CheckpointError(
        f"{path} is not a checkpoint this version can read: expected an AttnRes Lens directory "
        "(config.json with 'format': 'attnres-lens'), a Hugging Face GPT-2, Llama-family or fla "
        "Transformer directory, or a nanoGPT ckpt.pt."
    )


def _directory(path: Path) -> Path:
    return path if path.is_dir() else path.parent


# ---- the formats, in detection order ------------------------------------------------------------
def _load_ours(path: Path, allow_nonfinite: bool) -> Model:
    return load_ours(_directory(path), allow_nonfinite=allow_nonfinite)


def _is_ours(path: Path) -> bool:
    config_path = _directory(path) / CONFIG_FILE
    if not (config_path.exists() or config_path.is_symlink()):
        return False
    try:
        data = read_json(config_path)
    except CheckpointError:
        return True  # a broken config.json: report it as ours, with the reason
    return not isinstance(data, dict) or "format" in data or "residual" in data


def _is_torch_file(path: Path) -> bool:
    return path.is_file() and path.suffix in TORCH_SUFFIXES and path.name != "pytorch_model.bin"


def _is_hf(path: Path) -> bool:
    return _hf_model_type(path) is not None


def _hf_model_type(path: Path) -> str | None:
    """config.json's model_type, or None when there is no readable one."""
    try:
        raw = read_json(_directory(path) / CONFIG_FILE)
    except CheckpointError:
        return None
    return raw.get("model_type") if isinstance(raw, dict) else None


def _import_hf(path: Path, allow_nonfinite: bool) -> Model:
    directory, model_type = _directory(path), _hf_model_type(path)
    if model_type in PARALLEL_RESIDUAL:
        raise CheckpointError(
            f"{directory} is a {model_type} model, whose attention and MLP read the same input "
            "(parallel residual), so its sublayers have no order for depth attention to run over; "
            "it is refused."
        )
    importer = HF_MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None
    if importer is None:
        raise CheckpointError(
            f"{directory} has the Hugging Face model_type {model_type!r}; the ones that can be imported "
            f"are {', '.join(HF_MODEL_TYPES)}."
        )
    return importer(directory, allow_nonfinite)


def _has_ckpt_pt(path: Path) -> bool:
    return path.is_dir() and (path / "ckpt.pt").is_file()


def _import_ckpt_pt(path: Path, allow_nonfinite: bool) -> Model:
    return _import_torch_file(path / "ckpt.pt", allow_nonfinite)


def _is_weights_only(path: Path) -> bool:
    return path.is_file() and (path.suffix == ".safetensors" or path.name == "pytorch_model.bin")


def _refuse_weights_only(path: Path, allow_nonfinite: bool) -> Model:
    raise CheckpointError(weights_only_sentence(path))


def weights_only_sentence(path: Path) -> str:
    """What to say of a file holding weights but no architecture (HF pytorch_model.bin, model.safetensors)."""
    return (
        f"{path} holds only weights, like a Hugging Face pytorch_model.bin or model.safetensors, and no "
        "architecture; a Hugging Face model needs the config.json saved beside its weights: give the "
        "path of the directory that holds both."
    )


def _is_bare_state_dict(data: dict) -> bool:
    return "model" not in data and bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def _import_torch_file(path: Path, allow_nonfinite: bool) -> Model:
    data = load_torch_file(path)
    if _is_bare_state_dict(data):
        raise CheckpointError(weights_only_sentence(path))
    state = state_dict_of(data, path)
    for layout in TORCH_LAYOUTS:
        if layout.test(state):
            return layout.read(path, data, allow_nonfinite)
    raise CheckpointError(
        f"{path} holds a state dict of no known layout (no transformer.h.0.attn.c_attn.weight, "
        "no attnres_mixer.mixer.queries); expected a nanoGPT or nanogpt-attnres-repro ckpt.pt."
    )


@dataclass(frozen=True)
class Format:
    """A checkpoint format: ``test(path)`` recognises it, ``read(path, allow_nonfinite)`` loads it."""

    name: str
    test: Callable[[Path], bool]
    read: Callable[[Path, bool], Model]


FORMATS = (
    Format("attnres-lens", _is_ours, _load_ours),
    Format("torch-pickled file", _is_torch_file, _import_torch_file),
    Format("Hugging Face directory", _is_hf, _import_hf),
    Format("weights without an architecture", _is_weights_only, _refuse_weights_only),
    Format("directory holding ckpt.pt", _has_ckpt_pt, _import_ckpt_pt),
)


# ---- paths that are refused before any reader opens them ------------------------------------------
def _check_plain_file(path: Path) -> None:
    """Refuses pipes, devices and archives before anything opens them (a FIFO would block)."""
    if not path.is_file():
        raise CheckpointError(
            f"{path} is not a regular file or directory; a pipe, socket or device cannot be a checkpoint."
        )
    name = path.name.lower()
    with open(path, "rb") as file:
        head = file.read(512)
    if name.endswith(ARCHIVE_SUFFIXES) or head[257:262] == b"ustar" or head[:2] == b"\x1f\x8b":
        raise CheckpointError(
            f"{path} is a zip or tar archive, which is not read directly; unpack it and give the "
            "checkpoint directory (the one holding config.json)."
        )


def _existing(path) -> Path:
    try:
        path = Path(path)
        if not path.exists() and path.is_symlink():
            raise CheckpointError(f"{path} is a symbolic link that leads nowhere (a broken link or a loop).")
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; give a checkpoint directory or file.")
        path.resolve(strict=True)
    except CheckpointError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be resolved ({exc.__class__.__name__}: {exc}).") from None
    return path
