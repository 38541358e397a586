"""fla-org/flash-linear-attention ``TransformerForCausalLM`` directories (model_type ``transformer``).

Its block is Llama's (RMSNorm PreNorm, RoPE with the halves convention, SwiGLU ``GatedMLP``,
grouped-query attention, optional q/k biases and a per-head q/k RMSNorm of eps 1e-5), under fla's
own key names. With ``attnres_block_size`` in its config it is an AttnRes model whose conventions
are ours: the block size counts sublayers (1 = Full, an even S = Block), the sources are the token
embedding, the completed block sums and the current block's partial sum (absent at a block's first
sublayer), the readout ``model.res_proj`` reads every block with the last counted complete and is
followed by ``model.norm``, the keys are ``nn.RMSNorm`` with a gain and eps ``norm_eps``, and each
query (a ``[1, d]`` linear weight) starts at zero.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CONFIG_FILE, CheckpointError
from .common import finish_import, hf_tying, hf_weights, read_hf_config
from .llama import stack_parts
from .mapping import Rule, apply_rules

FLA_QK_NORM_EPS = 1e-5  # fla.modules.RMSNorm's default, which its Attention does not override
FLA_RULES = (
    Rule(r"model\.embeddings\.weight", "wte.weight"),
    Rule(r"model\.layers\.(\d+)\.attn_norm\.weight", r"blocks.\1.attn_norm.weight"),
    Rule(r"model\.layers\.(\d+)\.attn\.(q|k|v)_proj\.(weight|bias)", r"blocks.\1.attn.c_attn.\3[\2]"),
    Rule(r"model\.layers\.(\d+)\.attn\.o_proj\.weight", r"blocks.\1.attn.c_proj.weight"),
    Rule(r"model\.layers\.(\d+)\.attn\.(q|k)_norm\.weight", r"blocks.\1.attn.\2_norm.weight"),
    Rule(r"model\.layers\.(\d+)\.mlp_norm\.weight", r"blocks.\1.mlp_norm.weight"),
    Rule(r"model\.layers\.(\d+)\.mlp\.(gate|up)_proj\.weight", r"blocks.\1.mlp.c_fc.weight[\2]"),
    Rule(r"model\.layers\.(\d+)\.mlp\.down_proj\.weight", r"blocks.\1.mlp.c_proj.weight"),
    Rule(r"model\.layers\.(\d+)\.(attn|mlp)_res_proj\.weight", r"blocks.\1.\2_res.query"),
    Rule(r"model\.layers\.(\d+)\.(attn|mlp)_res_norm\.weight", r"blocks.\1.\2_res.norm.weight"),
    Rule(r"model\.norm\.weight", "final_norm.weight"),
    Rule(r"model\.res_proj\.weight", "out_res.query"),
    Rule(r"model\.res_norm\.weight", "out_res.norm.weight"),
    Rule(r"lm_head\.weight", "lm_head.weight"),
)
FLA_IGNORED = (
    (r"model\.layers\.\d+\.attn\.rotary\.inv_freq", "RoPE frequency buffer; recomputed from rope_theta"),
)


def residual_of(size, path: Path) -> tuple[str, int | None]:
    """(our residual rule, S) from fla's ``attnres_block_size`` (None, 1 or an even number)."""
    if size is None:
        return "prenorm", None
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or (size > 1 and size % 2):
        raise CheckpointError(
            f"{path}: attnres_block_size={size!r} is not one fla accepts "
            "(null, 1 for Full, or an even number)."
        )
    return ("full", None) if size == 1 else ("block", size)


def mlp_width(raw: dict) -> int:
    """fla's GatedMLP width: intermediate_size, else 2/3 * hidden_ratio * d rounded up to 256."""
    if raw.get("intermediate_size"):
        return raw["intermediate_size"]
    width = int(raw["hidden_size"] * (raw.get("hidden_ratio") or 4) * 2 / 3)
    return 256 * ((width + 255) // 256)


def fla_fields(raw: dict, path: Path) -> dict:
    """Our ModelConfig fields from an fla TransformerConfig; refuses what we do not run."""
    if raw.get("hidden_act", "swish") != "swish":
        raise CheckpointError(f"{path}: hidden_act {raw['hidden_act']!r} is not supported (only 'swish').")
    if raw.get("rope_theta", 10000.0) is None:
        raise CheckpointError(f"{path}: rope_theta is null; fla's attention needs a RoPE base.")
    try:
        context, window = raw.get("max_position_embeddings", 2048), raw.get("window_size")
        if window is not None and not (isinstance(window, int) and window >= context):
            raise CheckpointError(
                f"{path}: window_size={window!r} (sliding-window attention shorter than the context of "
                f"{context}) is not supported; only full causal attention is run exactly."
            )
        residual, size = residual_of(raw.get("attnres_block_size"), path)
        qk_norm = bool(raw.get("qk_norm", False))
        return dict(
            vocab_size=raw.get("vocab_size", 32000),
            block_size=context,
            n_layer=raw["num_hidden_layers"],
            n_head=raw["num_heads"],
            d_model=raw["hidden_size"],
            residual=residual,
            attnres_block_size=size,
            norm="rmsnorm",
            norm_eps=raw.get("norm_eps", 1e-6),
            position="rope",
            rope_theta=raw.get("rope_theta", 10000.0),
            mlp="gated",
            activation="silu",
            d_mlp=mlp_width(raw),
            n_kv_head=raw.get("num_kv_heads") or raw["num_heads"],
            bias=False,
            qkv_bias=bool(raw.get("qkv_bias", False)),
            attn_out_bias=False,
            qk_norm=qk_norm,
            qk_norm_eps=FLA_QK_NORM_EPS if qk_norm else None,
        )
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks the field {exc.args[0]!r}.") from None


def conventions(fields: dict) -> list[tuple[str, str]]:
    """fla's depth-attention conventions as the report lists them (AttnRes models only)."""
    if fields["residual"] == "prenorm":
        return []
    return [
        ("block-size unit", f"sublayers (attnres_block_size={fields['attnres_block_size'] or 1})"),
        ("sources", "token embedding, completed block sums, partial sum (none at a block's first sublayer)"),
        ("readout", "model.res_proj over every block (the last counted complete), then model.norm"),
        ("key norm", f"nn.RMSNorm with gain, eps=norm_eps={fields['norm_eps']:g}"),
        ("query init", "zeros ([1, d] linear weights)"),
        ("embedding as source", "yes (token embedding; positions are RoPE)"),
    ]


def import_fla_transformer(directory: Path, allow_nonfinite: bool):
    """An fla TransformerForCausalLM directory, PreNorm or AttnRes (``attnres_block_size``)."""
    raw = read_hf_config(directory)
    fields = fla_fields(raw, directory / CONFIG_FILE)
    state, source = hf_weights(directory)
    ours, mapped, ignored = apply_rules(state, FLA_RULES, FLA_IGNORED, source, fields["n_layer"])
    ours = stack_parts(ours, source)
    for name in [k for k in ours if k.endswith(".query")]:
        if tuple(ours[name].shape) == (1, fields["d_model"]):  # nn.Linear(d, 1).weight -> [d]
            ours[name] = ours[name].reshape(-1)
    return finish_import(
        fields,
        (ours, mapped, ignored),
        source,
        allow_nonfinite,
        form="fla-transformer",
        tokenizer_dir=directory,
        **hf_tying(raw),
        conventions=conventions(fields),
    )
