"""nanoGPT with Block AttnRes: the PR layout (karpathy/nanoGPT#696, #697) and limei1221/nanoAttnRes.

Both keep nanoGPT's GPT-2 (LayerNorm eps 1e-5, exact GELU, tied head) and add per sublayer
``transformer.h.{i}.{attn,mlp}_res_proj.weight`` [1, d] (the query) and ``…_res_norm.weight`` (the
key RMSNorm's gain), with no readout parameters: the output is ``ln_f`` of the last block's sum.
They differ in the rest (docs/formats.md):

  PR           ``model_args.attn_res`` + ``attn_res_block_size`` (sublayers; a boundary only before
               a Transformer layer, S//2 layers per block); the embedding is ``b_0`` and also starts
               block 1's partial sum; key-norm eps 1e-6.
  nanoAttnRes  ``model_args.n_attn_res_blocks`` = N blocks of S = 2L/N sublayers (2L = Full); the
               embedding is ``b_0`` only, as ours; key-norm eps 1e-5.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..checkpoint import CheckpointError
from .common import finish_import, model_args_of, state_dict_of, steps_of
from .gpt2 import nanogpt_fields
from .mapping import GPT2_IGNORED, Rule, apply_rules, gpt2_rules, query_vectors

PROJ = re.compile(r"transformer\.h\.(\d+)\.(attn|mlp)_res_proj\.weight")
PR_KEY = re.compile(r"transformer\.h\.\d+\.(attn|mlp)_res_(proj|norm)\.weight")

RULES = gpt2_rules(conv1d=False) + (
    Rule(r"transformer\.h\.(\d+)\.(attn|mlp)_res_proj\.weight\[0\]", r"blocks.\1.\2_res.query"),
    Rule(r"transformer\.h\.(\d+)\.(attn|mlp)_res_norm\.weight", r"blocks.\1.\2_res.norm.weight"),
)


def is_nanogpt_attnres(state: dict) -> bool:
    """Per-sublayer ``{attn,mlp}_res_proj`` / ``_res_norm`` keys under nanoGPT names."""
    return any(PR_KEY.fullmatch(k) for k in state)


def _pr_depth(args: dict, source: Path) -> tuple[dict, tuple]:
    """The PR's rule: S//2 Transformer layers per block, embedding counted in b_0 and block 1."""
    S = args.get("attn_res_block_size", 4)
    if args.get("attn_res") is not True:
        raise CheckpointError(
            f"{source}: model_args.attn_res is {args.get('attn_res')!r} but the weights are AttnRes."
        )
    if not isinstance(S, int) or isinstance(S, bool) or S < 2:
        raise CheckpointError(
            f"{source}: attn_res_block_size={S!r} gives no whole Transformer layer per block; "
            "the PR needs S >= 2."
        )
    fields = dict(
        residual="block", attnres_block_size=2 * (S // 2), readout="none", first_block_has_embedding=True
    )
    conventions = (
        (
            "block-size unit",
            f"attn_res_block_size={S} sublayers, boundaries before Transformer layers: "
            f"{S // 2} layer(s) = {2 * (S // 2)} sublayers per block",
        ),
        ("sources", "b_0 = embedding, block sums, partial; block 1's partial starts from the embedding"),
        ("final readout", "none: ln_f of the last block's partial sum"),
        ("key norm", "RMSNorm with gain, eps 1e-6"),
        ("query init", "normal(0, 0.02) (nanoGPT's Linear init)"),
        ("embedding is a source", "twice: b_0 and inside block 1"),
    )
    return fields, conventions


def _nanoattnres_depth(args: dict, n_layer: int, source: Path) -> tuple[dict, tuple]:
    """nanoAttnRes: N blocks of 2L/N sublayers, our sources, no readout."""
    N, L = args.get("n_attn_res_blocks"), 2 * n_layer
    if not isinstance(N, int) or isinstance(N, bool) or N < 1 or L % N:
        raise CheckpointError(
            f"{source}: n_attn_res_blocks={N!r} with AttnRes weights; it must divide 2 * n_layer = {L}."
        )
    S = L // N
    fields = dict(
        residual="full" if S == 1 else "block", attnres_block_size=S if S > 1 else None, readout="none"
    )
    conventions = (
        ("block-size unit", f"n_attn_res_blocks={N} blocks over {L} sublayers: S = {S} sublayers"),
        ("sources", "b_0 = embedding, block sums, partial (none at a block's first sublayer)"),
        ("final readout", "none: ln_f of the last block's sum" + (" (v_L alone)" if S == 1 else "")),
        ("key norm", "RMSNorm with gain, eps 1e-5"),
        ("query init", "zeros"),
        ("embedding is a source", "yes, once (b_0)"),
    )
    return fields, conventions


def import_nanogpt_attnres(path: Path, data: dict, allow_nonfinite: bool):
    """A nanoGPT ``ckpt.pt`` written by the AttnRes PR or by nanoAttnRes (told apart by model_args)."""
    args = model_args_of(data, path)
    if "n_attn_res_blocks" in args:
        form, eps, (depth, conventions) = "nanoattnres", 1e-5, _nanoattnres_depth(args, args["n_layer"], path)
    elif "attn_res" in args:
        form, eps, (depth, conventions) = "nanogpt-attnres-pr", 1e-6, _pr_depth(args, path)
    else:
        raise CheckpointError(
            f"{path} has AttnRes keys ({{attn,mlp}}_res_proj) but model_args has neither 'attn_res' "
            "(nanoGPT PR) nor 'n_attn_res_blocks' (nanoAttnRes); its block rule is unknown."
        )
    state = query_vectors(state_dict_of(data, path), PROJ, args["n_embd"], path)
    return finish_import(
        {**nanogpt_fields(args), "depth_norm_eps": eps, **depth},
        apply_rules(state, RULES, GPT2_IGNORED, path, args["n_layer"]),
        path,
        allow_nonfinite,
        form=form,
        tokenizer_dir=path.parent,
        data=data,
        conventions=conventions,
        trained_steps=steps_of(data),
    )
