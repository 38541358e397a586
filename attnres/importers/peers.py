"""AttnRes checkpoints from public implementations (conventions: docs/formats.md).

tokenbender/nanogpt-attnres-repro: a nanoGPT GPT-2 (LayerNorm eps 1e-5, exact GELU, tied head)
whose residual is replaced by one ``DepthSoftmaxMixer``: ``attnres_mixer.mixer.queries`` [2L+1, d]
(zero-init; row k is sublayer k+1's query, row 2L the output readout) and
``attnres_mixer.mixer.key_norms.{k}.weight`` (RMSNorm with gain, eps ``attnres_eps`` = 1e-8).
Its sources and block rule (S in sublayers, embedding = b_0, block sums, partial, readout over
all blocks) are ours, so only the key-norm eps needs ``ModelConfig.depth_norm_eps``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from .gpt2 import finish, model_args_of, state_dict_of, steps_of, tie_head, tokenizer_beside
from .mapping import GPT2_IGNORED, Rule, apply_rules, gpt2_rules, site_key

REPRO_QUERIES = "attnres_mixer.mixer.queries"
PR_KEY = re.compile(r"transformer\.h\.\d+\.(attn|mlp)_res_(proj|norm)\.weight")

REPRO_RULES = gpt2_rules(conv1d=False) + (
    # AttnResBlock registers ln_1 and attn a second time inside attn_branch: same tensors.
    Rule(r"transformer\.h\.(\d+)\.attn_branch\.norm\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
    Rule(
        r"transformer\.h\.(\d+)\.attn_branch\.attn\.(c_attn|c_proj)\.(weight|bias)", r"blocks.\1.attn.\2.\3"
    ),
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
    return REPRO_QUERIES in state


def is_nanogpt_pr(state: dict) -> bool:
    return any(PR_KEY.fullmatch(k) for k in state)


def refuse_nanogpt_pr(path: Path) -> None:
    raise CheckpointError(
        f"{path} uses the nanoGPT AttnRes PR layout (transformer.h.{{i}}.attn_res_proj / mlp_res_proj, "
        "karpathy/nanoGPT#697) whose source could not be read to confirm its final readout, key-norm eps "
        "and block-size unit; it is refused rather than guessed (see docs/formats.md)."
    )


def _split_queries(state: dict, n_layer: int, path: Path) -> dict:
    queries = state[REPRO_QUERIES]
    if not isinstance(queries, torch.Tensor) or queries.ndim != 2 or queries.shape[0] != 2 * n_layer + 1:
        shape = list(queries.shape) if isinstance(queries, torch.Tensor) else type(queries).__name__
        raise CheckpointError(f"{path}: {REPRO_QUERIES} has shape {shape}; expected [2*n_layer+1, n_embd].")
    rest = {k: v for k, v in state.items() if k != REPRO_QUERIES}
    return rest | {f"{REPRO_QUERIES}[{k}]": queries[k].clone() for k in range(queries.shape[0])}


def _repro_fields(args: dict, path: Path) -> dict:
    """ModelConfig fields from the repro's GPTConfig.__dict__ (saved under 'config')."""
    variant = args.get("attnres_variant", "none")
    if variant not in ("full", "block"):
        raise CheckpointError(
            f"{path}: attnres_variant {variant!r} with AttnRes weights; expected 'full' or 'block'."
        )
    for flag in ("v_residual", "mhc"):
        if args.get(flag):
            raise CheckpointError(
                f"{path}: {flag}=True (value residual / mHC) is not supported; only plain AttnRes."
            )
    return dict(
        vocab_size=args["vocab_size"],
        block_size=args["block_size"],
        n_layer=args["n_layer"],
        n_head=args["n_head"],
        d_model=args["n_embd"],
        residual=variant,
        attnres_block_size=args.get("attnres_block_size", 1) if variant == "block" else None,
        norm="layernorm",
        norm_eps=1e-5,
        bias=bool(args.get("bias", True)),
        activation="gelu",
        depth_norm_eps=float(args.get("attnres_eps", 1e-8)),
    )


def import_repro(path: Path, data: dict, allow_nonfinite: bool):
    """tokenbender/nanogpt-attnres-repro ``ckpt.pt`` ({"model", "config", "iter_num", ...})."""
    args = model_args_of(data, path, key="config" if "config" in data else "model_args")
    fields = _repro_fields(args, path)
    state = _split_queries(state_dict_of(data, path), fields["n_layer"], path)
    ours, mapped, ignored = apply_rules(state, REPRO_RULES, GPT2_IGNORED, path, fields["n_layer"])
    tied, tied_keys = tie_head(ours, None, path)
    notes: list[str] = []
    tokenizer = tokenizer_beside(path.parent, notes, data, fields["vocab_size"])
    conventions = REPRO_CONVENTIONS + (("attnres_eps (this file)", f"{fields['depth_norm_eps']:g}"),)
    report = dict(
        format="nanogpt-attnres-repro",
        mapped=mapped,
        ignored=ignored,
        tied=tied_keys,
        conventions=conventions,
        trained_steps=steps_of(data),
        notes=notes,
    )
    return finish({**fields, "tie_embeddings": tied}, ours, path, tokenizer, allow_nonfinite, report)
