"""Zefan-Cai/open-attention-residuals ``qwen3_attnres`` Hugging Face directories (docs/formats.md).

A Qwen3 (the Llama-family block of llama.py: RoPE, grouped-query attention, per-head q/k norms,
SwiGLU) whose residual is replaced, per sublayer, by ``{attn,mlp}_res_proj.weight`` [1, d] (the
query), ``{attn,mlp}_res_norm.weight`` (the key RMSNorm's gain, eps ``rms_norm_eps``) and
``{attn,mlp}_res_bias`` (a learned scalar added to the newest source's logit); block mode adds the
readout ``final_res_{proj,norm,bias}``. Its block mode is the nanoGPT PR's rule: ``attnres_num_blocks``
blocks of ``ceil(layers / num_blocks)`` Transformer layers, the embedding starting block 1's partial.
Its other modes and gates are not Attention Residuals as the paper defines them and are refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..checkpoint import CONFIG_FILE, CheckpointError
from .common import finish_import, hf_tying, hf_weights, read_hf_config
from .llama import LLAMA_IGNORED, LLAMA_RULES, llama_fields, stack_parts
from .mapping import Rule, apply_rules, query_vectors

PROJ = re.compile(r"model\.(layers\.\d+\.(attn|mlp)|final)_res_proj\.weight")
RULES = LLAMA_RULES + (
    Rule(r"model\.layers\.(\d+)\.(attn|mlp)_res_proj\.weight\[0\]", r"blocks.\1.\2_res.query"),
    Rule(r"model\.layers\.(\d+)\.(attn|mlp)_res_norm\.weight", r"blocks.\1.\2_res.norm.weight"),
    Rule(r"model\.layers\.(\d+)\.(attn|mlp)_res_bias", r"blocks.\1.\2_res.recency_bias"),
    Rule(r"model\.final_res_proj\.weight\[0\]", "out_res.query"),
    Rule(r"model\.final_res_norm\.weight", "out_res.norm.weight"),
    Rule(r"model\.final_res_bias", "out_res.recency_bias"),
)
UNUSED_NULL = ((r"model\.layers\.\d+\.(attn|mlp)_null_source", "null source: only its delta modes read it"),)
MODE_REFUSALS = {
    "full": "attends over cumulative hidden states (the embedding plus every earlier output, the newest "
    "one twice) and reads no readout, not over sublayer outputs",
    "delta": "adds a softmax over sublayer outputs to the running residual stream",
    "delta_block": "adds a softmax over block deltas to the running residual stream",
    "delta_v": "routes the value stream separately and adds its mix to the residual stream",
    "pre_gated": "gates the sources with sigmoid(gate(stream)) and adds their mix to the residual stream",
    "first_layer": "mixes only the stream and the first MLP output",
}


def _depth_fields(raw: dict, n_layer: int, path: Path) -> dict:
    """Block mode with the recency-bias gate; every other mode or gate is refused."""
    mode, gate = raw.get("attnres_mode", "block"), raw.get("attnres_gate_type", "bias")
    if mode != "block":
        why = MODE_REFUSALS.get(mode, "is not one this version knows")
        raise CheckpointError(f"{path}: attnres_mode={mode!r} {why}; only 'block' is Attention Residuals.")
    if gate != "bias":
        raise CheckpointError(
            f"{path}: attnres_gate_type={gate!r} mixes the depth mix with the stream through a gate; "
            "only 'bias' (the recency bias alone) is supported."
        )
    blocks = raw.get("attnres_num_blocks", 8)
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1:
        raise CheckpointError(f"{path}: attnres_num_blocks must be a positive integer, got {blocks!r}.")
    layers_per_block = max(1, -(-n_layer // blocks))
    return dict(
        residual="block",
        attnres_block_size=2 * layers_per_block,
        first_block_has_embedding=True,
        depth_recency_bias=True,
    ), (
        ("block-size unit", f"attnres_num_blocks={blocks} blocks of ceil({n_layer}/{blocks}) = "
         f"{layers_per_block} Transformer layer(s) = {2 * layers_per_block} sublayers"),
        ("sources", "b_0 = embedding, block sums, partial; block 1's partial starts from the embedding"),
        ("final readout", "final_res_* over all blocks, the last one counted complete"),
        ("key norm", f"Qwen3RMSNorm with gain, eps = rms_norm_eps ({raw.get('rms_norm_eps', 1e-6):g})"),
        ("recency bias", "a learned scalar per site on the newest source's logit "
         f"(init attnres_recency_bias_init = {raw.get('attnres_recency_bias_init', 3.0)})"),
        ("query init", "normal(0, initializer_range)"),
        ("embedding is a source", "twice: b_0 and inside block 1"),
    )  # fmt: skip


def import_qwen3_attnres(directory: Path, allow_nonfinite: bool):
    """A ``model_type: qwen3_attnres`` directory (config.json + model.safetensors + tokenizer)."""
    raw = read_hf_config(directory)
    path = directory / CONFIG_FILE
    fields = llama_fields({**raw, "model_type": "qwen3"}, path)  # the Qwen3 block
    depth, conventions = _depth_fields(raw, fields["n_layer"], path)
    state, source = hf_weights(directory)
    state = query_vectors(state, PROJ, fields["d_model"], source)
    ours, mapped, ignored = apply_rules(state, RULES, LLAMA_IGNORED + UNUSED_NULL, source, fields["n_layer"])
    return finish_import(
        {**fields, **depth, "depth_norm_eps": fields["norm_eps"]},
        (stack_parts(ours, source), mapped, ignored),
        source,
        allow_nonfinite,
        form="qwen3-attnres",
        tokenizer_dir=directory,
        **hf_tying(raw),
        conventions=conventions,
    )
