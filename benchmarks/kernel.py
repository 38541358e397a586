"""The depth-attention kernel alone: Triton vs its torch reference, against the copy ceiling.

The kernel reads each of K sources once ([K, N, d]) and writes G outputs ([G, N, d]): it is
memory-bound, so its figure of merit is bytes moved per second next to what a plain device copy
achieves on the same bytes (read + write).
"""

from __future__ import annotations

import torch

from attnres import kernels

from . import harness
from .harness import Variant

# (case, K sources, N = batch * seq rows, d, G queries): phase-1 calls the model paths make.
CASES = (
    ("gpt2-small block, 6th group", 4, 8 * 1024, 768, 4),
    ("gpt2-small full, readout", 25, 8 * 1024, 768, 1),
    ("deep full, last group", 43, 8 * 512, 512, 6),
)


def kernel_timing(device: torch.device, warmup: int, repeats: int, errors: list) -> list[dict]:
    """One row per case and implementation: median ms and achieved GB/s (fp32 sources)."""
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for case, K, N, d, G in CASES:
        sources = torch.randn(K, N, d, device=device, generator=gen)
        queries = torch.randn(G, d, device=device, generator=gen) / d**0.5
        copy_out = torch.empty_like(sources)
        moved = (K + G) * N * d * sources.element_size()  # each source read once, each output written once
        variants = [
            Variant(
                {"impl": "triton"},
                lambda s=sources, q=queries: kernels.depth_attend(s, q, 1e-6, backend="triton"),
            ),
            Variant(
                {"impl": "torch"}, lambda s=sources, q=queries: kernels.depth_attend_reference(s, q, 1e-6)
            ),
            Variant({"impl": "copy"}, lambda s=sources, o=copy_out: o.copy_(s)),
        ]
        for v in variants:
            v.label.update(shape=case, phase="kernel", residual="", depth_impl=v.label["impl"])
        live = harness.warm_up(variants, device, warmup, 20.0, errors)
        harness.time_interleaved(live, device, repeats)
        for v in live:
            ms = harness.median_ms(v)
            nbytes = 2 * sources.numel() * sources.element_size() if v.label["impl"] == "copy" else moved
            rows.append({"case": case, "K": K, "N": N, "d": d, "G": G, "dtype": "fp32",
                         "impl": v.label["impl"], "median_ms": round(ms, 4),
                         "gb_per_s": round(nbytes / ms / 1e6, 1)})  # fmt: skip
        del sources, copy_out
    return rows
