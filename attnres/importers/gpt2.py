"""GPT-2 family: nanoGPT's ``ckpt.pt`` and Hugging Face GPT-2 directories, run exactly.

Both are PreNorm GPT-2: LayerNorm (eps 1e-5, with bias unless nanoGPT's bias=False), learned
positions, a tied head. nanoGPT uses exact GELU and nn.Linear weights [out, in] like ours; HF
uses tanh-GELU ("gelu_new") and Conv1D weights [in, out], transposed here.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CONFIG_FILE, CheckpointError
from .common import finish_import, hf_weights, model_args_of, read_hf_config, state_dict_of, steps_of
from .mapping import GPT2_IGNORED, apply_rules, gpt2_rules

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


def nanogpt_fields(args: dict) -> dict:
    """ModelConfig fields of nanoGPT's GPT-2 body from its ``model_args`` (``model_args_of``).

    LayerNorm with eps 1e-5 (with bias unless ``bias`` is false), exact GELU, learned positions;
    the residual rule is the caller's to add.
    """
    return dict(
        vocab_size=args["vocab_size"],
        block_size=args["block_size"],
        n_layer=args["n_layer"],
        n_head=args["n_head"],
        d_model=args["n_embd"],
        norm="layernorm",
        norm_eps=1e-5,
        bias=bool(args.get("bias", True)),
        activation="gelu",
    )


def import_nanogpt(path: Path, data: dict, allow_nonfinite: bool):
    """nanoGPT ``ckpt.pt``: {"model": state_dict, "model_args": {...}, "iter_num", ...}."""
    state, args = state_dict_of(data, path), model_args_of(data, path)
    renamed = apply_rules(state, gpt2_rules(conv1d=False), GPT2_IGNORED, path, args["n_layer"])
    return finish_import(
        {**nanogpt_fields(args), "residual": "prenorm"},
        renamed,
        path,
        allow_nonfinite,
        form="nanogpt",
        tokenizer_dir=path.parent,
        data=data,
        trained_steps=steps_of(data),
    )


def hf_fields(raw: dict, path: Path) -> dict:
    """Our ModelConfig fields from an HF GPT-2 config.json; refuses options we do not run.

    Its model_type is "gpt2" (the loader checked).
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


def import_hf_gpt2(directory: Path, allow_nonfinite: bool):
    """A Hugging Face GPT-2 directory (config.json + model.safetensors + tokenizer files)."""
    raw = read_hf_config(directory)
    fields = hf_fields(raw, directory / CONFIG_FILE)
    state, source = hf_weights(directory)
    if not any(k.startswith("transformer.") for k in state):  # GPT2Model files omit the prefix
        state = {k if k.startswith("lm_head.") else "transformer." + k: v for k, v in state.items()}
    renamed = apply_rules(state, gpt2_rules(conv1d=True), GPT2_IGNORED, source, fields["n_layer"])
    tied = raw.get("tie_word_embeddings", True)
    return finish_import(
        fields, renamed, source, allow_nonfinite, form="hf-gpt2", tokenizer_dir=directory, tied_by_config=tied
    )
