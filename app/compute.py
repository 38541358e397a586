"""Torch-side helpers the app calls (no streamlit here, so they are testable on their own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

import probes

T = TypeVar("T")

# The probes the pages ask for by name (names are hashable cache keys).
PROBES: dict[str, Callable] = {
    "depth_weights": probes.depth_weights,
    "stream_norms": probes.stream_norms,
    "depth_retrieval": probes.depth_retrieval,
    "gradient_norms": probes.gradient_norms,
    "gate_attribution": probes.gate_attribution,
    "route_ablation": probes.route_ablation,
    "ablate": probes.ablate,
    "logit_lens": probes.logit_lens,
}


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA (or MPS) out-of-memory error."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_with_oom_fallback(fn: Callable[[str], T], device: str) -> tuple[T, str]:
    """Runs ``fn(device)``; on GPU out-of-memory empties the cache and runs ``fn("cpu")`` instead.

    Returns:
        (result, the device that produced it), so the caller can tell the user about a fallback.
    """
    try:
        return fn(device), device
    except Exception as exc:
        if device == "cpu" or not is_out_of_memory(exc):
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return fn("cpu"), "cpu"


@torch.no_grad()
def prompt_loss(model, text: str) -> float | None:
    """Mean next-character cross-entropy (nats) of the model on the prompt; None for one token."""
    prompt = probes.encode_prompt(model, text)
    if len(prompt.ids) < 2:
        return None
    ids = torch.tensor([prompt.ids], device=next(model.parameters()).device)
    return float(model(ids[:, :-1], targets=ids[:, 1:]).loss)


@torch.no_grad()
def depth_parameter_summary(model) -> tuple[list[dict], list[dict]]:
    """The depth-attention parameters of an AttnRes model at a glance.

    Returns:
        (rows: per site its kind, query norm and mean key-norm gain;
         cosine rows: per site the cosine of its query with every other site's, NaN for zero queries).
        Both empty for PreNorm, which has no depth parameters.
    """
    if model.config.residual == "prenorm":
        return [], []
    L = model.config.n_sublayers
    sites = range(1, L + 2)
    names = [f"l={l} " + ("readout" if l == L + 1 else "attn" if l % 2 else "mlp") for l in sites]
    queries = torch.stack([model.site(l).query.float().cpu() for l in sites])  # [L+1, d]
    norms = queries.norm(dim=-1)
    rows = [
        {
            "site": name,
            "query norm": float(n),
            "key gain mean": float(model.site(l).norm.weight.float().mean()),
        }
        for name, n, l in zip(names, norms, sites, strict=True)
    ]
    unit = queries / norms.clamp_min(1e-12)[:, None]
    cosine = (unit @ unit.T).masked_fill((norms == 0)[:, None] | (norms == 0)[None, :], float("nan"))
    cos_rows = [
        {"site": name, **{other: round(float(c), 3) for other, c in zip(names, row, strict=True)}}
        for name, row in zip(names, cosine, strict=True)
    ]
    return rows, cos_rows
