"""jon123boss/LR-AttnRes ``ckpt_step:N.pt``: recognised and refused with the setting that rules it out.

Its files hold ``model`` (``transformer.wte.weight``, ``transformer.layers.{i}.*``,
``transformer.attn_residuals.{k}.query`` or, with ``use_lrid``, ``transformer.lrid_queries.{k}`` and
low-rank key projections), ``model_args`` (``asdict(ModelConfig)``) and optimiser state. None of its
variants is Attention Residuals in the form this version runs (docs/formats.md).
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError

MARKERS = ("transformer.attn_residuals.", "transformer.lrid_queries.", "transformer.layers.0.attn.c_attn.")


def is_lr_attnres(state: dict) -> bool:
    """Its parameter names (``transformer.layers.*``, ``attn_residuals``, ``lrid_queries``)."""
    return any(k.startswith(MARKERS) for k in state)


def refuse_lr_attnres(path: Path, data: dict, allow_nonfinite: bool = False):
    """Raises CheckpointError naming the first LR-AttnRes setting that cannot be reproduced."""
    args = data.get("model_args") if isinstance(data.get("model_args"), dict) else {}
    use_lrid = args.get("use_lrid") or any(
        k.startswith("transformer.lrid_queries.") for k in data.get("model", {})
    )
    if use_lrid:
        reason = (
            "use_lrid=True (LR AttnRes: low-rank input-dependent source keys of rank "
            f"{args.get('lrid_rank', '?')} emitted by each sublayer's output projection) is a low-rank "
            "variant, not the paper's depth attention"
        )
    elif (
        args.get("use_attnres")
        and args.get("attnres_type", "block") == "block"
        and args.get("attnres_block_average", True)
    ):
        reason = (
            "attnres_block_average=True makes each block source a count-averaged sum (count^-alpha) with a "
            "log(count) logit prior, not the block sum of Block AttnRes"
        )
    else:
        reason = (
            f"its Transformer (norm_pos={args.get('norm_pos', 'after')!r}: gain-free RMSNorms with the "
            "dtype's eps, "
            "a parameter-free qk-norm, no readout site) is not a block this version runs"
        )
    raise CheckpointError(f"{path} is a jon123boss/LR-AttnRes checkpoint: {reason}; it is refused.")
