"""The whole no-grad forward replayed as one CUDA graph: the benchmarks' ``+graph`` rows.

An explicit opt-in for fixed-shape inference, measured beside the eager paths (``run.py``,
``profile.py``): the forward's ~10^2 kernel launches become one graph launch, so Python and launch
overhead vanish. It works because ``attnres.kernels.fused_two_phase`` allocates its buffers once
per forward and never synchronises with the host. The library itself never captures a graph.
"""

from __future__ import annotations

import torch
from torch import Tensor


class GraphedForward:
    """``model(tokens).logits`` under no_grad for one fixed token shape, replayed as a CUDA graph.

    The graph reads the weights in place (updates to them are seen) but its token shape, depth_impl
    and autocast dtype are fixed at capture; the returned logits tensor is reused by the next call.
    """

    def __init__(self, model, tokens: Tensor, depth_impl: str | None = None, dtype=None, warmup=3):
        self.model, self.depth_impl, self.dtype = model, depth_impl, dtype
        self.tokens = tokens.clone()
        side = torch.cuda.Stream(tokens.device)
        side.wait_stream(torch.cuda.current_stream(tokens.device))
        with torch.cuda.stream(side):  # warm-up off the default stream: compiles triton, fills caches
            for _ in range(warmup):
                self._forward()
        torch.cuda.current_stream(tokens.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._forward()

    def _forward(self) -> Tensor:
        enabled = self.dtype is not None and self.dtype != torch.float32
        with torch.no_grad(), torch.autocast("cuda", dtype=self.dtype or torch.bfloat16, enabled=enabled,
                                             cache_enabled=False):  # fmt: skip
            return self.model(self.tokens, depth_impl=self.depth_impl).logits

    def __call__(self, tokens: Tensor) -> Tensor:
        """Replays the graph on new tokens of the captured shape; returns the (reused) logits."""
        self.tokens.copy_(tokens)
        self.graph.replay()
        return self.logits


def graphed_step(model, tokens: Tensor, depth_impl: str | None, dtype):
    """A benchmark step that captures the graph at its first (warm-up) call, then replays it.

    Capturing lazily puts a capture failure in the variant's row instead of ending the run.
    """
    cache = {}

    def step():
        if "graph" not in cache:
            cache["graph"] = GraphedForward(model, tokens, depth_impl, dtype)
        return cache["graph"](tokens)

    return step
