"""Llama family from Hugging Face directories (model_type llama, qwen2, qwen3, mistral), run exactly.

One block for all four: RMSNorm PreNorm sublayers, rotary positions (default or linear scaling),
grouped-query attention (``num_key_value_heads``), a SwiGLU MLP, a tied or separate head. What
differs is read from config.json: Qwen2's q/k/v biases, Qwen3's per-head ``q_norm``/``k_norm``,
Llama's ``attention_bias``/``mlp_bias``, ``head_dim`` != d/heads. Our attention keeps q, k and v in
one matrix ``c_attn = [q; k; v]`` and our gated MLP ``c_fc = [gate; up]``: the separate projections
are stacked in that order, and the report names each part (``blocks.0.attn.c_attn.weight[q]``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, CheckpointError
from .common import finish_import, hf_tying, hf_weights, read_hf_config
from .mapping import Rule, apply_rules

LLAMA_TYPES = ("llama", "qwen2", "qwen3", "mistral")
ROPE_TYPES = ("default", "linear")
PARTS = {"c_attn": ("q", "k", "v"), "c_fc": ("gate", "up")}  # order of the stacked rows
LLAMA_RULES = (
    Rule(r"model\.embed_tokens\.weight", "wte.weight"),
    Rule(r"model\.layers\.(\d+)\.input_layernorm\.weight", r"blocks.\1.attn_norm.weight"),
    Rule(r"model\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)", r"blocks.\1.attn.c_attn.\3[\2]"),
    Rule(r"model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)", r"blocks.\1.attn.c_proj.\2"),
    Rule(r"model\.layers\.(\d+)\.self_attn\.(q|k)_norm\.weight", r"blocks.\1.attn.\2_norm.weight"),
    Rule(r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"blocks.\1.mlp_norm.weight"),
    Rule(r"model\.layers\.(\d+)\.mlp\.(gate|up)_proj\.(weight|bias)", r"blocks.\1.mlp.c_fc.\3[\2]"),
    Rule(r"model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)", r"blocks.\1.mlp.c_proj.\2"),
    Rule(r"model\.norm\.weight", "final_norm.weight"),
    Rule(r"lm_head\.weight", "lm_head.weight"),
)
LLAMA_IGNORED = (
    (
        r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",
        "RoPE frequency buffer; recomputed from rope_theta",
    ),
)


def stack_parts(ours: dict, source: Path) -> dict:
    """Stacks the tensors mapped to ``name[part]`` into our ``name``, in the order of PARTS."""
    stacked, groups = {}, {}
    for key, tensor in ours.items():
        found = re.fullmatch(r"(.+)\[(\w+)\]", key)
        if found is None:
            stacked[key] = tensor
        else:
            groups.setdefault(found[1], {})[found[2]] = tensor
    for name, parts in groups.items():
        order = PARTS[name.split(".")[-2]]
        absent = [part for part in order if part not in parts]
        if absent:
            raise CheckpointError(
                f"{source}: {name} is stacked from the {'/'.join(order)} projections, "
                f"but the {', '.join(absent)} part is missing."
            )
        if len({tuple(parts[part].shape[1:]) for part in order}) > 1:
            shapes = ", ".join(f"{part} {list(parts[part].shape)}" for part in order)
            raise CheckpointError(f"{source}: the parts of {name} have different input widths ({shapes}).")
        stacked[name] = torch.cat([parts[part] for part in order])
    return stacked


def rope_of(raw: dict, path: Path) -> tuple[float, float]:
    """(rope_theta, linear factor) of a config; RoPE types other than default and linear are refused.

    Read from ``rope_parameters`` (transformers 5) or ``rope_theta`` + ``rope_scaling`` (transformers 4).
    """
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if not isinstance(params, dict) or any(isinstance(v, dict) for v in params.values()):
        raise CheckpointError(f"{path}: its RoPE parameters {params!r} are not one plain set of fields.")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise CheckpointError(
            f"{path}: RoPE type {kind!r} is not supported; "
            "only the default and 'linear' RoPE are run exactly."
        )
    partial = params.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise CheckpointError(f"{path}: partial_rotary_factor={partial!r} is not supported (only 1.0).")
    theta = params.get("rope_theta", raw.get("rope_theta", 10000.0))
    return theta, params.get("factor", 1.0) if kind == "linear" else 1.0


def refuse_sliding_window(raw: dict, path: Path, context: int) -> None:
    """A window shorter than the context changes the attention; one at least as long does not."""
    window = raw.get("sliding_window")
    if raw.get("model_type") == "mistral":
        enabled = window is not None
    else:  # Qwen2/Qwen3: only with use_sliding_window (transformers 5 also lists it in layer_types)
        enabled = bool(raw.get("use_sliding_window")) or "sliding_attention" in (raw.get("layer_types") or ())
    if enabled and not (isinstance(window, int) and window >= context):
        raise CheckpointError(
            f"{path}: sliding-window attention (sliding_window={window!r}, shorter than the context of "
            f"{context}) is not supported; only full causal attention is run exactly."
        )


def biases_of(raw: dict) -> dict:
    """Our bias fields from each model type's own convention."""
    kind = raw["model_type"]
    if kind == "qwen2":  # q/k/v always carry a bias, the output projection and the MLP never
        return dict(bias=False, qkv_bias=True, attn_out_bias=False)
    if kind == "mistral":
        return dict(bias=False, qkv_bias=False, attn_out_bias=False)
    attention = bool(raw.get("attention_bias", False))  # llama: also mlp_bias; qwen3: none in the MLP
    return dict(
        bias=bool(raw.get("mlp_bias", False)) and kind == "llama", qkv_bias=attention, attn_out_bias=attention
    )


def llama_fields(raw: dict, path: Path) -> dict:
    """Our ModelConfig fields from a Llama-family config.json; refuses what we do not run."""
    activation = raw.get("hidden_act", "silu")
    if activation not in ("silu", "swish"):
        raise CheckpointError(
            f"{path}: hidden_act {activation!r} is not supported (only 'silu', i.e. SwiGLU)."
        )
    try:
        heads, d, context = raw["num_attention_heads"], raw["hidden_size"], raw["max_position_embeddings"]
        refuse_sliding_window(raw, path, context)
        theta, factor = rope_of(raw, path)
        return dict(
            vocab_size=raw["vocab_size"],
            block_size=context,
            n_layer=raw["num_hidden_layers"],
            n_head=heads,
            d_model=d,
            residual="prenorm",
            norm="rmsnorm",
            norm_eps=raw.get("rms_norm_eps", 1e-6),
            position="rope",
            rope_theta=theta,
            rope_linear_factor=factor,
            mlp="gated",
            activation="silu",
            d_mlp=raw["intermediate_size"],
            n_kv_head=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim")
            or (d // heads if isinstance(d, int) and isinstance(heads, int) else None),
            qk_norm=raw["model_type"] == "qwen3",
            **biases_of(raw),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks the field {exc.args[0]!r}.") from None


def import_hf_llama(directory: Path, allow_nonfinite: bool):
    """A Hugging Face Llama / Qwen2 / Qwen3 / Mistral directory (config.json + weights + tokenizer)."""
    raw = read_hf_config(directory)
    fields = llama_fields(raw, directory / CONFIG_FILE)
    state, source = hf_weights(directory)
    if not any(k.startswith("model.") for k in state):  # LlamaModel files omit the prefix
        state = {k if k.startswith("lm_head.") else "model." + k: v for k, v in state.items()}
    ours, mapped, ignored = apply_rules(state, LLAMA_RULES, LLAMA_IGNORED, source, fields["n_layer"])
    notes = []
    if raw.get("sliding_window") is not None and raw.get("model_type") == "mistral":
        notes.append(f"sliding_window={raw['sliding_window']} covers the whole context: full attention")
    return finish_import(
        fields,
        (stack_parts(ours, source), mapped, ignored),
        source,
        allow_nonfinite,
        form=f"hf-{raw['model_type']}",
        tokenizer_dir=directory,
        **hf_tying(raw),
        notes=notes,
    )
