"""Imports the checkpoints people have into our structure, exactly, with an ImportReport.

Detection order (first match wins; our own format is recognised earlier, in load_model):

  1. a directory (or a file in one) whose config.json has a ``model_type``  -> Hugging Face:
     ``gpt2`` (gpt2.py), ``llama``/``qwen2``/``qwen3``/``mistral`` (llama.py), fla's
     ``transformer`` (fla.py); ``gpt_neox`` and any other model_type are refused.
  2. a torch-pickled file (``*.pt``, ``*.pth``, ``*.ckpt``, ``*.bin``) or a directory holding
     ``ckpt.pt``, read with ``torch.load(weights_only=True)``; its state dict decides:
       a. ``attnres_mixer.mixer.queries``           -> tokenbender/nanogpt-attnres-repro
       b. ``transformer.h.{i}.attn_res_proj.weight`` -> nanoGPT AttnRes PR layout: refused
       c. ``transformer.h.{i}.attn.c_attn.weight``   -> nanoGPT (GPT-2)
     a dict of tensors alone (a bare state dict, e.g. HF's pytorch_model.bin) is refused with a
     sentence asking for its config.json; so is a lone model.safetensors without one.
  3. anything else is refused with a sentence saying what was expected.

The tokenizer is looked for where each project keeps it (``vocab.py``).

The name mapping of each layout is a regex table in ``mapping.py`` (GPT-2) and ``peers.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, MAX_CONFIG_BYTES, CheckpointError
from .fla import import_fla_transformer
from .gpt2 import import_hf_gpt2, import_nanogpt, state_dict_of
from .llama import LLAMA_TYPES, import_hf_llama
from .peers import import_repro, is_nanogpt_pr, is_repro, refuse_nanogpt_pr
from .pickles import load_torch_file
from .report import ImportReport

__all__ = ["ImportReport", "import_foreign"]

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
HF_IMPORTERS = {"gpt2": import_hf_gpt2, "transformer": import_fla_transformer} | dict.fromkeys(
    LLAMA_TYPES, import_hf_llama
)
PARALLEL_RESIDUAL = (  # model types whose attention and MLP read the same input
    "gpt_neox",
    "gptj",
    "phi",
)


def import_foreign(path: Path, allow_nonfinite: bool = False):
    """Imports a checkpoint that is not in our format, or raises CheckpointError.

    Args:
        path: a checkpoint file or directory that is not ours.
        allow_nonfinite: keep NaN/Inf weights (for the inspector) instead of refusing them.

    Returns:
        The model (eval mode, CPU) with ``model.import_report`` set.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if path.is_file() and path.suffix in TORCH_SUFFIXES and path.name != "pytorch_model.bin":
        return _import_torch_file(path, allow_nonfinite)
    model_type = _hf_model_type(directory / CONFIG_FILE)
    if model_type is not None:
        return _import_hf(directory, model_type, allow_nonfinite)
    if path.is_file() and (path.suffix == ".safetensors" or path.name == "pytorch_model.bin"):
        raise CheckpointError(weights_only_sentence(path))
    if path.is_dir() and (path / "ckpt.pt").is_file():
        return _import_torch_file(path / "ckpt.pt", allow_nonfinite)
    raise CheckpointError(
        f"{path} is not a checkpoint this version can read: expected an AttnRes Lens directory "
        "(config.json with 'format': 'attnres-lens'), a Hugging Face GPT-2, Llama-family or fla "
        "Transformer directory, or a nanoGPT ckpt.pt."
    )


def _import_hf(directory: Path, model_type, allow_nonfinite: bool):
    if model_type in PARALLEL_RESIDUAL:
        raise CheckpointError(
            f"{directory} is a {model_type} model, whose attention and MLP read the same input "
            "(parallel residual), so its sublayers have no order for depth attention to run over; "
            "it is refused."
        )
    importer = HF_IMPORTERS.get(model_type) if isinstance(model_type, str) else None
    if importer is None:
        raise CheckpointError(
            f"{directory} has the Hugging Face model_type {model_type!r}; the ones that can be imported "
            f"are {', '.join(HF_IMPORTERS)}."
        )
    return importer(directory, allow_nonfinite)


def _hf_model_type(config_path: Path) -> str | None:
    if not config_path.is_file() or config_path.stat().st_size > MAX_CONFIG_BYTES:
        return None
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return raw.get("model_type") if isinstance(raw, dict) else None


def weights_only_sentence(path: Path) -> str:
    """What to say of a file holding weights but no architecture (HF pytorch_model.bin, model.safetensors)."""
    return (
        f"{path} holds only weights, like a Hugging Face pytorch_model.bin or model.safetensors, and no "
        "architecture; a Hugging Face model needs the config.json saved beside its weights: give the "
        "path of the directory that holds both."
    )


def _is_bare_state_dict(data: dict) -> bool:
    return "model" not in data and bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def _import_torch_file(path: Path, allow_nonfinite: bool):
    data = load_torch_file(path)
    if _is_bare_state_dict(data):
        raise CheckpointError(weights_only_sentence(path))
    state = state_dict_of(data, path)
    if is_repro(state):
        return import_repro(path, data, allow_nonfinite)
    if is_nanogpt_pr(state):
        refuse_nanogpt_pr(path)
    if "transformer.h.0.attn.c_attn.weight" in state:
        return import_nanogpt(path, data, allow_nonfinite)
    raise CheckpointError(
        f"{path} holds a state dict of no known layout (no transformer.h.0.attn.c_attn.weight, "
        "no attnres_mixer.mixer.queries); expected a nanoGPT or nanogpt-attnres-repro ckpt.pt."
    )
