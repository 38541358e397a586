"""GPT-2 family: nanoGPT's ``ckpt.pt`` and Hugging Face GPT-2 directories, run exactly.

Both are PreNorm GPT-2: LayerNorm (eps 1e-5, with bias unless nanoGPT's bias=False), learned
positions, a tied head. nanoGPT uses exact GELU and nn.Linear weights [out, in] like ours; HF
uses tanh-GELU ("gelu_new") and Conv1D weights [in, out], transposed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, CheckpointError, build_model, read_safetensors
from ..config import ModelConfig
from ..import_report import ImportReport, describe
from .mapping import GPT2_IGNORED, apply_rules, gpt2_rules, strip_prefixes
from .pickles import load_torch_file
from .vocab import find_tokenizer

SHARD_INDEX = "model.safetensors.index.json"
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
# HF GPT-2 options that change the computation in ways we do not run: field -> the value we run.
HF_REQUIRED = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}


def is_nanogpt(state: dict) -> bool:
    """A nanoGPT (GPT-2) state dict: its first attention's fused projection is there."""
    return "transformer.h.0.attn.c_attn.weight" in state


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


def tie_head(
    ours: dict, tied_by_config: bool | None, source: Path, why: str = "GPT-2 ties them"
) -> tuple[bool, list[str]]:
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


def tokenizer_beside(directory: Path, notes: list[str], data: dict | None = None, vocab_size: int = 0):
    """The tokenizer where the checkpoint's project keeps it (``vocab.find_tokenizer``), else None."""
    return find_tokenizer(directory, data, vocab_size, notes)


def finish(fields: dict, ours: dict, source: Path, tokenizer, allow_nonfinite: bool, report: dict):
    """Builds and validates the model, then attaches its ImportReport."""
    try:
        config = ModelConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the architecture it describes is invalid ({exc}).") from None
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but vocab_size is {config.vocab_size}."
        )
    model = build_model(config, ours, source, tokenizer, allow_nonfinite)
    model.import_report = ImportReport(
        format=report["format"],
        source=str(source),
        architecture=describe(model),
        n_params=model.num_params(),
        mapped=tuple(report["mapped"]),
        ignored=tuple(report["ignored"]),
        missing=tuple(report.get("missing", ())),
        tied=tuple(report.get("tied", ())),
        conventions=tuple(report.get("conventions", ())),
        trained_steps=report.get("trained_steps"),
        notes=tuple(report.get("notes", ())),
    )
    return model


def steps_of(data: dict) -> int | None:
    """The optimisation steps a nanoGPT checkpoint records (``iter_num``), if it is an integer."""
    steps = data.get("iter_num")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def import_nanogpt(path: Path, data: dict, allow_nonfinite: bool):
    """nanoGPT ``ckpt.pt``: {"model": state_dict, "model_args": {...}, "iter_num", ...}."""
    state, args = state_dict_of(data, path), model_args_of(data, path)
    ours, mapped, ignored = apply_rules(state, gpt2_rules(conv1d=False), GPT2_IGNORED, path, args["n_layer"])
    tied, tied_keys = tie_head(ours, None, path)
    notes: list[str] = []
    tokenizer = tokenizer_beside(path.parent, notes, data, args["vocab_size"])
    bias = bool(args.get("bias", True))
    fields = dict(
        vocab_size=args["vocab_size"],
        block_size=args["block_size"],
        n_layer=args["n_layer"],
        n_head=args["n_head"],
        d_model=args["n_embd"],
        residual="prenorm",
        norm="layernorm",
        norm_eps=1e-5,
        bias=bias,
        activation="gelu",
        tie_embeddings=tied,
    )
    report = dict(
        format="nanogpt",
        mapped=mapped,
        ignored=ignored,
        tied=tied_keys,
        trained_steps=steps_of(data),
        notes=notes,
    )
    return finish(fields, ours, path, tokenizer, allow_nonfinite, report)


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


def hf_fields(raw: dict, path: Path) -> dict:
    """Our ModelConfig fields from an HF GPT-2 config.json (model_type "gpt2", which the loader
    checked); refuses options we do not run.
    """
    activation = raw.get("activation_function", "gelu_new")
    if activation not in HF_ACTIVATIONS:
        raise CheckpointError(
            f"{path}: activation_function {activation!r} is not supported ({', '.join(HF_ACTIVATIONS)})."
        )
    for name, value in HF_REQUIRED.items():
        if raw.get(name, value) != value:
            raise CheckpointError(f"{path}: {name}={raw.get(name)!r} is not supported (only {value!r}).")
    try:
        return dict(
            vocab_size=raw["vocab_size"],
            block_size=raw.get("n_positions", 1024),
            n_layer=raw["n_layer"],
            n_head=raw["n_head"],
            d_model=raw["n_embd"],
            residual="prenorm",
            norm="layernorm",
            norm_eps=raw.get("layer_norm_epsilon", 1e-5),
            bias=True,
            activation=HF_ACTIVATIONS[activation],
            d_mlp=raw.get("n_inner"),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks the field {exc.args[0]!r}.") from None


def hf_weights(directory: Path) -> tuple[dict, Path]:
    """model.safetensors, else its shards (model.safetensors.index.json), else pytorch_model.bin
    read with weights_only=True.
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


def import_hf_gpt2(directory: Path, allow_nonfinite: bool):
    """A Hugging Face GPT-2 directory (config.json + model.safetensors + tokenizer files)."""
    raw = read_hf_config(directory)
    fields = hf_fields(raw, directory / CONFIG_FILE)
    state, source = hf_weights(directory)
    if not any(k.startswith("transformer.") for k in state):  # GPT2Model files omit the prefix
        state = {k if k.startswith("lm_head.") else "transformer." + k: v for k, v in state.items()}
    ours, mapped, ignored = apply_rules(
        state, gpt2_rules(conv1d=True), GPT2_IGNORED, source, fields["n_layer"]
    )
    tied, tied_keys = tie_head(ours, raw.get("tie_word_embeddings", True), source)
    notes: list[str] = []
    tokenizer = tokenizer_beside(directory, notes, None, fields["vocab_size"])
    report = dict(format="hf-gpt2", mapped=mapped, ignored=ignored, tied=tied_keys, notes=notes)
    return finish({**fields, "tie_embeddings": tied}, ours, source, tokenizer, allow_nonfinite, report)
