"""jibran/Attention-Residuals ``checkpoints/{best/best,latest/latest}.pt`` (docs/formats.md).

``AttnResLM``: token embedding + a learned position table, then RoPE inside attention as well
(rotate-half, base 10000, ``head_dim`` per head), RMSNorm PreNorms (eps ``norm_eps``), a SwiGLU MLP
(``gate``, ``up``, ``down``; hidden ``dim * mlp_multiplier``), no biases, a tied head. Full AttnRes sites
``layers.{i}.attn_res_{attn,mlp}.{query_vec,key_norm.weight}`` read ``v_0..v_{l-1}`` as ours; the
output is the plain sum ``v_1 + .. + v_L`` (no readout site), then RMSNorm. ``BaselineLM`` (standard
residuals, same body) imports as PreNorm. Its Block AttnRes is refused (see ``_refuse``).
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError
from .common import finish_import, state_dict_of, steps_of
from .llama import stack_parts
from .mapping import Rule, apply_rules

RULES = (
    Rule(r"tok_embed\.weight", "wte.weight"),
    Rule(r"pos_embed\.weight", "wpe.weight"),
    Rule(r"layers\.(\d+)\.(attn_norm|mlp_norm)\.weight", r"blocks.\1.\2.weight"),
    Rule(r"layers\.(\d+)\.attn\.qkv\.weight", r"blocks.\1.attn.c_attn.weight"),
    Rule(r"layers\.(\d+)\.attn\.proj\.weight", r"blocks.\1.attn.c_proj.weight"),
    Rule(r"layers\.(\d+)\.mlp\.(gate|up)\.weight", r"blocks.\1.mlp.c_fc.weight[\2]"),
    Rule(r"layers\.(\d+)\.mlp\.down\.weight", r"blocks.\1.mlp.c_proj.weight"),
    Rule(r"layers\.(\d+)\.attn_res_attn\.query_vec", r"blocks.\1.attn_res.query"),
    Rule(r"layers\.(\d+)\.attn_res_attn\.key_norm\.weight", r"blocks.\1.attn_res.norm.weight"),
    Rule(r"layers\.(\d+)\.attn_res_mlp\.query_vec", r"blocks.\1.mlp_res.query"),
    Rule(r"layers\.(\d+)\.attn_res_mlp\.key_norm\.weight", r"blocks.\1.mlp_res.norm.weight"),
    Rule(r"norm\.weight", "final_norm.weight"),
    Rule(r"head\.weight", "lm_head.weight"),
)
IGNORED = ((r"layers\.\d+\.attn\.rope\.(inv_freq|cos_cache|sin_cache)", "RoPE buffer; recomputed"),)


def is_jibran(state: dict) -> bool:
    """Its embedding and fused qkv names."""
    return "tok_embed.weight" in state and "layers.0.attn.qkv.weight" in state


def _refuse(cfg: dict, attnres: bool, path: Path) -> None:
    if cfg.get("use_xsa"):
        raise CheckpointError(f"{path}: use_xsa=true (Exclusive Self Attention) is not supported.")
    if attnres and cfg.get("use_block_attn_res"):
        raise CheckpointError(
            f"{path}: use_block_attn_res=true is refused: its block boundaries fall after sublayer c where "
            "(c + 1) % block_size == 0 (the first block one sublayer short) and each block's first sublayer "
            "reads an all-zero partial source, which the paper's block rule does not have."
        )


def _fields(cfg: dict, state: dict, attnres: bool, path: Path) -> dict:
    try:
        d, heads, head_dim = int(cfg["dim"]), int(cfg["heads"]), int(cfg["head_dim"])
        return dict(
            vocab_size=state["tok_embed.weight"].shape[0],
            block_size=state["pos_embed.weight"].shape[0],
            n_layer=int(cfg["depth"]),
            n_head=heads,
            d_model=d,
            residual="full" if attnres else "prenorm",
            readout="sum" if attnres else "attnres",
            norm="rmsnorm",
            norm_eps=float(cfg.get("norm_eps", 1e-6)),
            bias=False,
            position="learned+rope",
            mlp="gated",
            activation="silu",
            d_mlp=d * int(cfg.get("mlp_multiplier", 4)),
            head_dim=head_dim,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its config['model'] lacks or garbles {exc}.") from None


def import_jibran(path: Path, data: dict, allow_nonfinite: bool):
    """A ``model_state`` / ``config`` checkpoint of AttnResLM (Full AttnRes) or BaselineLM."""
    config = data.get("config")
    cfg = config.get("model") if isinstance(config, dict) else None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} has no config['model'] dict; its architecture cannot be read.")
    state = state_dict_of(data, path)
    attnres = any(".attn_res_attn." in k for k in state)
    _refuse(cfg, attnres, path)
    fields = _fields(cfg, state, attnres, path)
    ours, mapped, ignored = apply_rules(state, RULES, IGNORED, path, fields["n_layer"])
    conventions = (
        ("block-size unit", "Full AttnRes (one source per sublayer)"),
        ("sources", "v_0 = token + learned position embedding, then every sublayer output"),
        ("final readout", "sum: v_1 + .. + v_L (no readout site, the embedding left out), then RMSNorm"),
        ("key norm", f"RMSNorm with gain, eps = norm_eps ({fields['norm_eps']:g})"),
        ("query init", "normal(0, 0.02)"),
        ("embedding is a source", "yes, once"),
    )
    return finish_import(
        fields,
        (stack_parts(ours, path), mapped, ignored),
        path,
        allow_nonfinite,
        form="jibran-attnres",
        tokenizer_dir=path.parent,
        conventions=conventions if attnres else (),
        trained_steps=steps_of(data, "step"),
    )
