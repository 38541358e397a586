"""AttnRes checkpoints from public implementations (conventions: docs/formats.md).

tokenbender/nanogpt-attnres-repro: a nanoGPT GPT-2 (LayerNorm eps 1e-5, exact GELU, tied head)
whose residual is replaced by one ``DepthSoftmaxMixer``: ``attnres_mixer.mixer.queries`` [2L+1, d]
(zero-init; row k is sublayer k+1's query, row 2L the output readout) and
``attnres_mixer.mixer.key_norms.{k}.weight`` (RMSNorm with gain, eps ``attnres_eps`` = 1e-8).
Its sources and block rule (S in sublayers, embedding = b_0, block sums, partial, readout over
all blocks) are ours, so only the key-norm eps needs ``ModelConfig.depth_norm_eps``.
Its PreNorm twin (``attnres_variant: none``, ``hc_disable: true``) wraps each branch in a plain
residual, registering ``ln_1``/``attn``/``ln_2``/``mlp`` again under ``attn_branch.*``,
``hc_attn.branch.*`` and ``hc_mlp.branch.{0,1}.*``; it imports as a PreNorm GPT-2.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from .common import finish_import, model_args_of, state_dict_of, steps_of
from .gpt2 import nanogpt_fields
from .mapping import GPT2_IGNORED, Rule, apply_rules, gpt2_rules, site_key

REPRO_QUERIES = "attnres_mixer.mixer.queries"

REPRO_RULES = gpt2_rules(conv1d=False) + (
    # AttnResBlock registers ln_1 and attn a second time inside attn_branch: same tensors.
    Rule(r"transformer\.h\.(\d+)\.attn_branch\.norm\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
    Rule(
        r"transformer\.h\.(\d+)\.attn_branch\.attn\.(c_attn|c_proj)\.(weight|bias)", r"blocks.\1.attn.\2.\3"
    ),
    # The PreNorm twin's plain residual wrappers (hc_disable=True): the same tensors again.
    Rule(r"transformer\.h\.(\d+)\.hc_attn\.branch\.norm\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
    Rule(
        r"transformer\.h\.(\d+)\.hc_attn\.branch\.attn\.(c_attn|c_proj)\.(weight|bias)",
        r"blocks.\1.attn.\2.\3",
    ),
    Rule(r"transformer\.h\.(\d+)\.hc_mlp\.branch\.0\.(weight|bias)", r"blocks.\1.mlp_norm.\2"),
    Rule(r"transformer\.h\.(\d+)\.hc_mlp\.branch\.1\.(c_fc|c_proj)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    Rule(r"attnres_mixer\.mixer\.queries\[(\d+)\]", lambda m, n: site_key(int(m[1]), n) + ".query"),
    Rule(
        r"attnres_mixer\.mixer\.key_norms\.(\d+)\.weight",
        lambda m, n: site_key(int(m[1]), n) + ".norm.weight",
    ),
)

REPRO_CONVENTIONS = (
    ("block-size unit", "sublayers ('logical layers'), as ours"),
    ("sources", "full: embedding + sublayer outputs; block: embedding, block sums, partial sum"),
    ("final readout", "query row 2L over all sources, last block counted complete, then ln_f"),
    ("key norm", "RMSNorm with learnable gain, eps = attnres_eps (default 1e-8)"),
    ("query init", "zeros"),
    ("embedding is a source", "yes (wte + wpe after dropout)"),
)


def is_repro(state: dict) -> bool:
    """The repro's AttnRes mixer, or its PreNorm twin's branch aliases (``attn_branch``, ``hc_attn``)."""
    return REPRO_QUERIES in state or "transformer.h.0.attn_branch.norm.weight" in state


def _split_queries(state: dict, n_layer: int, path: Path) -> dict:
    queries = state[REPRO_QUERIES]
    if not isinstance(queries, torch.Tensor) or queries.ndim != 2 or queries.shape[0] != 2 * n_layer + 1:
        shape = list(queries.shape) if isinstance(queries, torch.Tensor) else type(queries).__name__
        raise CheckpointError(f"{path}: {REPRO_QUERIES} has shape {shape}; expected [2*n_layer+1, n_embd].")
    rest = {k: v for k, v in state.items() if k != REPRO_QUERIES}
    return rest | {f"{REPRO_QUERIES}[{k}]": queries[k].clone() for k in range(queries.shape[0])}


def _repro_fields(args: dict, path: Path, has_queries: bool) -> dict:
    """ModelConfig fields from the repro's GPTConfig.__dict__ (saved under 'config')."""
    variant = args.get("attnres_variant", "none")
    if variant not in ("none", "full", "block") or (variant == "none") == has_queries:
        expected = "'full' or 'block'" if has_queries else "'none' (no attnres_mixer weights)"
        raise CheckpointError(
            f"{path}: attnres_variant {variant!r} does not fit its weights; expected {expected}."
        )
    for flag in ("v_residual", "mhc"):
        if args.get(flag):
            raise CheckpointError(
                f"{path}: {flag}=True (value residual / mHC) is not supported; only plain AttnRes."
            )
    if variant == "none" and args.get("hc_disable") is not True:
        raise CheckpointError(
            f"{path}: hc_disable={args.get('hc_disable')!r} means hyper-connections with "
            f"{args.get('hc_num_streams', 1)} stream(s), which are not supported; "
            "only hc_disable=True (PreNorm)."
        )
    residual = "prenorm" if variant == "none" else variant
    return dict(
        nanogpt_fields(args),
        residual=residual,
        attnres_block_size=args.get("attnres_block_size", 1) if variant == "block" else None,
        depth_norm_eps=float(args.get("attnres_eps", 1e-8)) if has_queries else None,
    )


def import_repro(path: Path, data: dict, allow_nonfinite: bool):
    """tokenbender/nanogpt-attnres-repro ``ckpt.pt`` ({"model", "config", "iter_num", ...})."""
    args = model_args_of(data, path, key="config" if "config" in data else "model_args")
    state = state_dict_of(data, path)
    has_queries = REPRO_QUERIES in state
    fields = _repro_fields(args, path, has_queries)
    if has_queries:
        state = _split_queries(state, fields["n_layer"], path)
    conventions = (
        REPRO_CONVENTIONS + (("attnres_eps (this file)", f"{fields['depth_norm_eps']:g}"),)
        if has_queries
        else (("residual", "PreNorm twin (attnres_variant 'none', hc_disable=True)"),)
    )
    return finish_import(
        fields,
        apply_rules(state, REPRO_RULES, GPT2_IGNORED, path, fields["n_layer"]),
        path,
        allow_nonfinite,
        form="nanogpt-attnres-repro",
        tokenizer_dir=path.parent,
        data=data,
        conventions=conventions,
        trained_steps=steps_of(data),
    )
