"""AtinChing/AttnResGPT-next-scale ``step_*.pt`` checkpoints (conventions: docs/formats.md).

A GPT with RMSNorm sublayer norms (with gain, eps ``model.norm_eps``), learned positions, a
tanh-GELU MLP of width ``d_ff`` and an optionally tied head. ``architecture`` is ``baseline``
(PreNorm), ``attnres`` (Full, or Block when ``attnres.mode`` is ``block``) or ``block_attnres``.
Each depth site is ``DepthAttentionResidual``: a query ``[d]`` and a key RMSNorm with gain and the
model's ``norm_eps``; the sources and the readout (``final_residual``) are ours.

The file holds only the weights (under ``model``), the step and training state (a numpy RNG state
among it, read with plain numpy arrays allow-listed); the architecture is in the run's
``config.snapshot.yaml`` (``runs/<run_name>/`` beside ``checkpoints/<run_name>/``).
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import MAX_CONFIG_BYTES, CheckpointError
from .common import finish_import, state_dict_of, steps_of
from .mapping import Rule, apply_rules

SNAPSHOT = "config.snapshot.yaml"
MARKER = "token_embedding.weight"

RULES = (
    Rule(r"token_embedding\.weight", "wte.weight"),
    Rule(r"position_embedding\.weight", "wpe.weight"),
    Rule(r"blocks\.(\d+)\.(attn_norm|mlp_norm)\.weight", r"blocks.\1.\2.weight"),
    Rule(r"blocks\.(\d+)\.attn\.qkv_proj\.(weight|bias)", r"blocks.\1.attn.c_attn.\2"),
    Rule(r"blocks\.(\d+)\.attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.c_proj.\2"),
    Rule(r"blocks\.(\d+)\.mlp\.fc_in\.(weight|bias)", r"blocks.\1.mlp.c_fc.\2"),
    Rule(r"blocks\.(\d+)\.mlp\.fc_out\.(weight|bias)", r"blocks.\1.mlp.c_proj.\2"),
    Rule(r"blocks\.(\d+)\.pre_attn_res\.query", r"blocks.\1.attn_res.query"),
    Rule(r"blocks\.(\d+)\.pre_attn_res\.key_norm\.weight", r"blocks.\1.attn_res.norm.weight"),
    Rule(r"blocks\.(\d+)\.pre_mlp_res\.query", r"blocks.\1.mlp_res.query"),
    Rule(r"blocks\.(\d+)\.pre_mlp_res\.key_norm\.weight", r"blocks.\1.mlp_res.norm.weight"),
    Rule(r"final_residual\.query", "out_res.query"),
    Rule(r"final_residual\.key_norm\.weight", "out_res.norm.weight"),
    Rule(r"final_norm\.weight", "final_norm.weight"),
    Rule(r"lm_head\.weight", "lm_head.weight"),
)
IGNORED = ((r"blocks\.\d+\.attn\.causal_mask", "causal-mask buffer; attention rebuilds it"),)


def is_attnresgpt(state: dict) -> bool:
    """Its token embedding and fused qkv projection names."""
    return MARKER in state and "blocks.0.attn.qkv_proj.weight" in state


def _snapshot_path(path: Path, data: dict) -> Path:
    """``config.snapshot.yaml`` beside the file, else ``<output_root>/runs/<run_name>/``."""
    run_name = data.get("run_name") if isinstance(data.get("run_name"), str) else path.parent.name
    candidates = [path.parent / SNAPSHOT, path.parent.parent.parent / "runs" / run_name / SNAPSHOT]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise CheckpointError(
            f"{path} holds only weights; its architecture is in the run's {SNAPSHOT}, looked for at "
            f"{' and '.join(str(c) for c in candidates)}."
        )
    return found


def read_snapshot(path: Path) -> dict:
    """The ``model:`` section of a config.snapshot.yaml, read with yaml.safe_load."""
    import yaml  # noqa: PLC0415 (only this format needs it)

    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; not a run config.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{path} is not readable YAML ({type(exc).__name__}).") from None
    model = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("attnres", {}), dict):
        raise CheckpointError(f"{path} has no 'model:' mapping (with an 'attnres:' mapping inside).")
    return model


def _residual(model: dict, attnres: dict, source: Path) -> str:
    """prenorm | full | block from ``architecture`` and ``attnres.mode``; refuses what we do not run."""
    architecture = model.get("architecture", "baseline")
    if architecture not in ("baseline", "attnres", "block_attnres"):
        raise CheckpointError(
            f"{source}: model.architecture {architecture!r} is not baseline/attnres/block_attnres."
        )
    if architecture == "baseline":
        return "prenorm"
    residual = "block" if architecture == "block_attnres" or attnres.get("mode") == "block" else "full"
    refusals = (
        (
            attnres.get("temperature", 1.0) != 1.0,
            f"attnres.temperature={attnres.get('temperature')!r} (only 1.0)",
        ),
        (
            residual == "full" and attnres.get("window_size") is not None,
            f"attnres.window_size={attnres.get('window_size')!r} (a sliding window over depth)",
        ),
        (attnres.get("rmsnorm_keys", True) is not True, "attnres.rmsnorm_keys=false (un-normalised keys)"),
        (
            attnres.get("include_embedding", True) is not True,
            "attnres.include_embedding=false (no v_0 source)",
        ),
    )
    for refused, setting in refusals:
        if refused:
            raise CheckpointError(f"{source}: {setting} is not supported; the checkpoint is refused.")
    return residual


def _block_size(n_layers: int, num_blocks, source: Path) -> int:
    """S in sublayers, when its split (extra layers to the first blocks) is ours.

    Ours is equal blocks, only the last one possibly shorter; any other split is refused.
    """
    if not isinstance(num_blocks, int) or isinstance(num_blocks, bool) or not 1 <= num_blocks <= n_layers:
        raise CheckpointError(
            f"{source}: attnres.num_blocks must be an integer in 1..{n_layers}, got {num_blocks!r}."
        )
    base, extra = divmod(n_layers, num_blocks)
    theirs = [base + (1 if i < extra else 0) for i in range(num_blocks)]
    S = 2 * theirs[0]
    ours = [min(S // 2, n_layers - start) for start in range(0, n_layers, S // 2)]
    if ours != theirs:
        raise CheckpointError(
            f"{source}: attnres.num_blocks={num_blocks} over {n_layers} layers gives blocks of {theirs} "
            "layers; "
            "only splits into equal blocks (the last one may be shorter) are supported."
        )
    return S


def _fields(model: dict, state: dict, source: Path) -> tuple[dict, tuple]:
    attnres = model.get("attnres") or {}
    residual = _residual(model, attnres, source)
    try:
        n_layers, vocab = int(model["n_layers"]), state[MARKER].shape[0]
        fields = dict(
            vocab_size=vocab,
            block_size=int(model["max_seq_len"]),
            n_layer=n_layers,
            n_head=int(model["n_heads"]),
            d_model=int(model["d_model"]),
            residual=residual,
            norm="rmsnorm",
            norm_eps=float(model.get("norm_eps", 1e-5)),
            bias=bool(model.get("bias", True)),
            activation="gelu_tanh",
            d_mlp=int(model["d_ff"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the 'model:' section lacks or garbles {exc}.") from None
    if residual == "block":
        fields["attnres_block_size"] = _block_size(n_layers, attnres.get("num_blocks"), source)
    if residual != "prenorm" and attnres.get("final_readout", True) is not True:
        fields["readout"] = "none"
    conventions = (
        ("block-size unit", "attnres.num_blocks counts Transformer layers; S here is in sublayers"),
        ("key norm", f"RMSNorm with gain, eps = model.norm_eps ({fields['norm_eps']:g})"),
        ("query init", "zeros" if attnres.get("zero_init_queries", True) else "normal(0, 0.02)"),
        (
            "final readout",
            "final_residual over all sources" if "readout" not in fields else "none: the last source",
        ),
        ("embedding is a source", "yes, once (include_embedding)"),
    )
    return fields, conventions if residual != "prenorm" else ()


def import_attnresgpt(path: Path, data: dict, allow_nonfinite: bool):
    """A ``step_*.pt`` of AttnResGPT-next-scale plus its run's config.snapshot.yaml."""
    state = state_dict_of(data, path)
    snapshot = _snapshot_path(path, data)
    fields, conventions = _fields(read_snapshot(snapshot), state, snapshot)
    unused = ((r"final_residual\..*", "final_readout: false, so never used"),) if "readout" in fields else ()
    ours, mapped, ignored = apply_rules(state, RULES, IGNORED + unused, path, fields["n_layer"])
    tokenizer_dir = snapshot.parent / "tokenizer"
    return finish_import(
        fields,
        (ours, mapped, ignored + ["rng_state, optimizer, scheduler, scaler (training state, not weights)"]),
        path,
        allow_nonfinite,
        form="attnresgpt",
        tokenizer_dir=tokenizer_dir if tokenizer_dir.is_dir() else path.parent,
        conventions=conventions,
        trained_steps=steps_of(data, "global_step"),
        notes=[f"architecture read from {snapshot}"],
    )
