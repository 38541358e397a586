"""What every importer does once its keys are renamed, and the readers several families share.

An importer reads a foreign config into ``ModelConfig`` fields, its weights into a state dict
(``read_hf_config`` and ``hf_weights`` for Hugging Face directories, ``state_dict_of`` and
``model_args_of`` for torch-pickled training checkpoints), renames the keys (``mapping.apply_rules``)
and hands the rest to ``finish_import``: the head tied or not, the tokenizer looked for, the
config built, the tensors checked against it (``checkpoint.build_model``) and the ImportReport
attached. Nothing here knows a particular family.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, CheckpointError, build_model, read_safetensors
from ..config import ModelConfig
from ..import_report import ImportReport, describe
from ..model import Model
from .mapping import strip_prefixes
from .pickles import load_torch_file
from .vocab import find_tokenizer

SHARD_INDEX = "model.safetensors.index.json"
GPT2_TIES = "GPT-2 ties them"  # why a file without a head is tied, when its config says nothing


def finish_import(
    fields: dict,
    renamed: tuple[dict, list, list],
    source: Path,
    allow_nonfinite: bool,
    *,
    form: str,
    tokenizer_dir: Path,
    data: dict | None = None,
    tied_by_config: bool | None = None,
    tie_why: str = GPT2_TIES,
    conventions: Sequence[tuple[str, str]] = (),
    trained_steps: int | None = None,
    notes: Sequence[str] = (),
) -> Model:
    """Builds the imported model, checks every tensor against its config, attaches its ImportReport.

    Args:
        fields: the ModelConfig fields read from the checkpoint; ``tie_embeddings`` is decided here.
        renamed: (our state dict, mapped pairs, ignored keys) as ``mapping.apply_rules`` returns
            them; an lm_head identical to the embedding is dropped from the state dict.
        source: the file or directory named in messages and in the report.
        allow_nonfinite: let NaN/Inf weights through (the inspector shows the damage).
        form: the report's format name ("nanogpt", "hf-llama", ...).
        tokenizer_dir: where the checkpoint's project keeps its tokenizer (``vocab.find_tokenizer``).
        data: the training checkpoint's top-level dict (its config names the dataset), or None.
        tied_by_config: what the config says of a tied head (None: it says nothing).
        tie_why: the reason the report gives when the file holds no head.
        conventions: the peer's depth-attention conventions, (name, value) pairs.
        trained_steps: the optimisation steps the checkpoint records, if any.
        notes: the report's first notes; where the tokenizer came from is added after them.

    Returns:
        The model in eval mode with ``model.import_report`` set.

    Raises:
        CheckpointError: the fields describe no valid model, the tokenizer is larger than the
            vocabulary, or a tensor is missing, extra, misshapen or not finite.
    """
    ours, mapped, ignored = renamed
    tied, tied_keys = tie_head(ours, tied_by_config, source, tie_why)
    notes = list(notes)
    tokenizer = find_tokenizer(tokenizer_dir, data, fields["vocab_size"], notes)
    try:
        config = ModelConfig(**{**fields, "tie_embeddings": tied})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the architecture it describes is invalid ({exc}).") from None
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but vocab_size is {config.vocab_size}."
        )
    model = build_model(config, ours, source, tokenizer, allow_nonfinite)
    model.import_report = ImportReport(
        format=form,
        source=str(source),
        architecture=describe(model),
        n_params=model.num_params(),
        mapped=tuple(mapped),
        ignored=tuple(ignored),
        tied=tuple(tied_keys),
        conventions=tuple(conventions),
        trained_steps=trained_steps,
        notes=tuple(notes),
    )
    return model


def hf_tying(raw: dict) -> dict:
    """``finish_import``'s tying arguments from an HF config.

    Its ``tie_word_embeddings`` defaults to false for every model type but GPT-2.
    """
    return dict(
        tied_by_config=bool(raw.get("tie_word_embeddings", False)), tie_why="tie_word_embeddings is true"
    )


def tie_head(ours: dict, tied_by_config: bool | None, source: Path, why: str) -> tuple[bool, list[str]]:
    """Decides weight tying from the tensors: an absent or identical lm_head is tied to wte.

    Returns (tied, the report's ``tied`` entries).
    """
    head, wte = ours.get("lm_head.weight"), ours.get("wte.weight")
    if head is None:
        if tied_by_config is False:
            raise CheckpointError(f"{source} has no lm_head.weight but its config says the head is not tied.")
        return True, [f"lm_head.weight = wte.weight (the file has no head; {why})"]
    if wte is not None and head.shape == wte.shape and torch.equal(head, wte):
        del ours["lm_head.weight"]
        return True, ["lm_head.weight = wte.weight (the file holds two identical copies)"]
    if tied_by_config:
        raise CheckpointError(
            f"{source}: lm_head.weight differs from wte.weight although the config ties them."
        )
    return False, []


def state_dict_of(data: dict, source: Path) -> dict:
    """The ``model`` state dict of a training checkpoint, wrapper prefixes removed."""
    state = data.get("model", data.get("state_dict", data.get("model_state")))  # model_state: jibran
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source} has no 'model' state dict (nanoGPT saves one under 'model').")
    if not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{source}: the 'model' state dict has non-string keys.")
    return strip_prefixes(state)


def model_args_of(data: dict, source: Path, key: str = "model_args") -> dict:
    """The architecture fields nanoGPT stores beside the weights (n_head cannot be read off them)."""
    args = data.get(key)
    if not isinstance(args, dict):
        raise CheckpointError(
            f"{source} has no '{key}' dict; the number of heads cannot be read from weights alone."
        )
    missing = [k for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size") if k not in args]
    if missing:
        raise CheckpointError(f"{source}: '{key}' lacks {', '.join(missing)}.")
    return args


def steps_of(data: dict, key: str = "iter_num") -> int | None:
    """The optimisation steps a training checkpoint records under ``key``, if it is an integer."""
    steps = data.get(key)
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def read_hf_config(directory: Path, name: str = CONFIG_FILE) -> dict:
    """A JSON object from a file of an HF directory (config.json unless named)."""
    path = directory / name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object.")
    return raw


def hf_weights(directory: Path) -> tuple[dict, Path]:
    """The weights of an HF directory and the file they came from.

    model.safetensors, else its shards (model.safetensors.index.json), else pytorch_model.bin read
    with weights_only=True.
    """
    if (directory / "model.safetensors").is_file():
        return read_safetensors(directory / "model.safetensors"), directory / "model.safetensors"
    if (directory / SHARD_INDEX).is_file():
        return read_shards(directory / SHARD_INDEX), directory / SHARD_INDEX
    if (directory / "pytorch_model.bin").is_file():
        return load_torch_file(directory / "pytorch_model.bin"), directory / "pytorch_model.bin"
    raise CheckpointError(
        f"{directory} has no model.safetensors (nor {SHARD_INDEX} with its shards, nor pytorch_model.bin)."
    )


def read_shards(index_path: Path) -> dict:
    """Every tensor of a sharded safetensors checkpoint, each from the shard its index names."""
    raw = read_hf_config(index_path.parent, index_path.name)
    weight_map = raw.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path} has no 'weight_map' naming each tensor's shard.")
    tensors = {}
    for shard in sorted(set(weight_map.values()), key=str):
        if not isinstance(shard, str) or Path(shard).name != shard or shard.startswith("."):
            raise CheckpointError(
                f"{index_path} names the shard {shard!r}; a shard must be a file beside it."
            )
        for name, tensor in read_safetensors(index_path.parent / shard).items():
            if weight_map.get(name) == shard:
                tensors[name] = tensor
    absent = sorted(name for name in weight_map if name not in tensors)
    if absent:
        raise CheckpointError(
            f"{index_path}: {absent[0]} is not in the shard {weight_map[absent[0]]!r} the index names"
            + (f" (nor {len(absent) - 1} more tensors)" if len(absent) > 1 else "")
        )
    return tensors
