"""Fused depth attention: one site's softmax over depth and its weighted sum in one pass.

At site l the stream is h_l = sum_k alpha_k v_k with alpha = softmax_k(w_l . RMSNorm_l(v_k))
(paper Eq. 2-3). RMSNorm_l(v) = g_l * v / rms(v), so w_l . RMSNorm_l(v) = (w_l * g_l) . v / rms(v):
with the gain folded into the query, a key is just its value divided by its RMS, and one kernel can
read each source once, take its inverse RMS and its logit, and fold it into an online softmax
(running max m, sum-exp s, weighted sum) -- the flash-attention trick applied over depth.

``depth_attend`` runs that kernel (Triton, CUDA) for G queries at once (paper Alg. 1, phase 1) and
can resume from an earlier (h, m, s) state (phase 2: merging a block's partial source).
``depth_attend_reference`` is the same math in plain torch; it is the CPU path and the tests' oracle.
``fused_two_phase`` is the two-phase forward built on them: every source is written once into one
preallocated buffer, so no per-site ``torch.stack`` copies are made. It is an inference path (the
kernel has no backward); ``Model.forward(depth_impl="fused")`` uses it only under ``torch.no_grad()``
on CUDA, and falls back to "two_phase" everywhere else.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .model import Model

# An online-softmax state over some sources, per query g and row n:
# h [G, N, d] = normalised weighted sum, m [G, N] = max logit, s [G, N] = sum of exp(logit - m).
State = tuple[Tensor, Tensor, Tensor]

MAX_QUERIES_PER_LAUNCH = 8  # the kernel keeps G accumulators in registers


@functools.cache
def _triton():
    """The triton module, or None; imported lazily so CPU installs never need it."""
    try:
        import triton  # noqa: F401

        from . import _triton_kernels
    except Exception:  # missing, or a build that cannot load here
        return None
    return _triton_kernels


def fused_available() -> bool:
    """True when the Triton kernel can run: CUDA present and triton importable."""
    return torch.cuda.is_available() and _triton() is not None


def fused_applicable(v0: Tensor) -> bool:
    """Whether ``depth_impl="fused"`` runs the kernel for a forward pass starting at v0."""
    return v0.is_cuda and not torch.is_grad_enabled() and fused_available()


def depth_attend_reference(sources: Tensor, queries: Tensor, eps: float, state: State | None = None) -> State:
    """Depth softmax with folded keys, in torch: the math the Triton kernel implements.

    Args:
        sources: [K, N, d] raw values v_k (N = B*T rows).
        queries: [G, d] folded queries w * g (``DepthAttention.folded_query``).
        eps: the key RMSNorm's eps.
        state: optional (h, m, s) over other sources for the same queries, merged in by online softmax.

    Returns:
        (h [G, N, d] in the sources' dtype, m [G, N] fp32, s [G, N] fp32).
    """
    v = sources.float()
    inv_rms = torch.rsqrt(v.pow(2).mean(-1) + eps)  # [K, N]
    logits = torch.einsum("knd,gd->gnk", v, queries.float()) * inv_rms.T  # [G, N, K]
    m = logits.amax(-1)
    if state is not None:
        m = torch.maximum(m, state[1])
    p = (logits - m[..., None]).exp()  # [G, N, K]
    s = p.sum(-1)
    acc = torch.einsum("gnk,knd->gnd", p, v)
    if state is not None:
        prior = state[2] * (state[1] - m).exp()  # earlier mass rescaled to the new max
        s = s + prior
        acc = acc + state[0].float() * prior[..., None]
    return (acc / s[..., None]).to(sources.dtype), m, s


def depth_weights(sources: Tensor, queries: Tensor, eps: float, m: Tensor, s: Tensor) -> Tensor:
    """alpha [G, N, K] from a final (m, s): exp(logit - m) / s, for callers that need the weights."""
    v = sources.float()
    logits = torch.einsum("knd,gd->gnk", v, queries.float()) * torch.rsqrt(v.pow(2).mean(-1) + eps).T
    return (logits - m[..., None]).exp() / s[..., None]


def depth_attend(
    sources: Tensor, queries: Tensor, eps: float, state: State | None = None, backend: str = "auto"
) -> State:
    """Depth softmax with folded keys: the Triton kernel on CUDA, the torch reference elsewhere.

    Same arguments and result as ``depth_attend_reference``; backend "auto" | "triton" | "torch".
    """
    kernels = _triton() if backend != "torch" else None
    use_triton = kernels is not None and (sources.is_cuda or backend == "triton")
    if backend == "triton" and kernels is None:
        raise RuntimeError("the triton backend was requested but triton cannot be imported")
    if not use_triton:
        return depth_attend_reference(sources, queries, eps, state)
    K, d = sources.shape[0], sources.shape[-1]
    flat = sources.reshape(K, -1, d).contiguous()
    if state is not None:
        h0, m0, s0 = state
        h0 = h0.reshape(-1, flat.shape[1], d)
        state = tuple(x.contiguous() for x in (h0, m0.float(), s0.float()))
    parts = []
    for g in range(0, queries.shape[0], MAX_QUERIES_PER_LAUNCH):
        chunk = slice(g, g + MAX_QUERIES_PER_LAUNCH)
        part_state = None if state is None else tuple(x[chunk] for x in state)
        parts.append(kernels.launch(flat, queries[chunk].float().contiguous(), eps, part_state))
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(xs) for xs in zip(*parts, strict=True))


def folded_queries(model: Model) -> Tensor:
    """All L+1 folded queries w_l * g_l as one [L+1, d] fp32 tensor: three kernels per forward
    instead of two per site (the stacks of queries and gains, then one product)."""
    sites = [model.site(l) for l in range(1, model.config.n_sublayers + 2)]
    queries = torch.stack([site.query for site in sites])
    gains = torch.stack([site.norm.weight for site in sites])
    return (queries * gains).float()


def _attend_into(sources: Tensor, queries: Tensor, eps: float, out: State, resume: bool, triton: bool):
    """Depth softmax of queries [G, d] over sources [K, N, d], written into out = (h, m, s);
    resume: continue from the state already in out (phase 2, in place). No allocation on Triton."""
    for g in range(0, queries.shape[0], MAX_QUERIES_PER_LAUNCH):
        rows = slice(g, g + MAX_QUERIES_PER_LAUNCH)
        part = out if queries.shape[0] <= MAX_QUERIES_PER_LAUNCH else tuple(x[rows] for x in out)
        if triton:
            _triton().launch(sources, queries[rows], eps, part if resume else None, out=part)
        else:
            result = depth_attend_reference(sources, queries[rows], eps, part if resume else None)
            for dst, src in zip(part, result, strict=True):
                dst.copy_(src)


@torch.no_grad()
def fused_two_phase(model: Model, v0: Tensor, backend: str = "auto") -> Tensor:
    """Paper Alg. 1 on the depth kernel; returns h_{L+1} [B, T, d]. Inference only (no autograd).

    Same groups as ``Model._two_phase``: phase 1 attends a group's G queries over the completed
    sources in one launch; phase 2 resumes each site's state with the sources made inside the group
    (Full: its earlier layers; Block: the running partial sum, kept in place in the buffer).
    Launch-lean: the folded queries are built once per forward; the sources live in one buffer and
    the (h, m, s) states in another, both allocated once per forward; phase 2 updates a site's state
    in place (one launch, no allocation); nothing synchronises with the host, so the whole forward
    can be captured in a CUDA graph (``GraphedForward``).
    """
    cfg, L, eps = model.config, model.config.n_sublayers, model.config.key_norm_eps
    block = cfg.residual == "block"
    B, T, d = v0.shape
    N = B * T
    if backend == "triton" and _triton() is None:
        raise RuntimeError("the triton backend was requested but triton cannot be imported")
    triton = backend == "triton" or (backend == "auto" and v0.is_cuda and _triton() is not None)
    groups = model._groups()
    g_max = max(len(sites) for sites in groups)
    # every source, written once: [K_max, N, d]. Under autocast it is stored in the autocast dtype,
    # as the sequential path keeps v_l and Block's partial sums (half the bytes to read); the
    # states h (the sublayers' inputs) stay in v0's dtype. fp32 runs are untouched.
    kind = v0.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else v0.dtype
    buffer = v0.new_empty(cfg.n_blocks + 1, N, d, dtype=dtype)
    buffer[0].copy_(v0.reshape(N, d))
    h_all = v0.new_empty(g_max, N, d)  # a group's states, reused group after group (stream order)
    m_all = torch.empty(g_max, N, device=v0.device, dtype=torch.float32)
    s_all = torch.empty_like(m_all)
    all_queries = folded_queries(model)  # [L+1, d] fp32, row l-1 is site l
    done = 1  # sources completed before the current group
    for sites in groups:
        G = len(sites)
        queries = all_queries[sites.start - 1 : sites.stop - 1]  # [G, d], a contiguous view
        _attend_into(buffer[:done], queries, eps, (h_all[:G], m_all[:G], s_all[:G]), False, triton)  # phase 1
        made = 0  # sources made inside this group so far (Block: at most 1, the partial)
        for j, l in enumerate(sites):
            h = h_all[j]
            if made:  # phase 2, in place
                state = (h_all[j : j + 1], m_all[j : j + 1], s_all[j : j + 1])
                _attend_into(buffer[done : done + made], queries[j : j + 1], eps, state, True, triton)
            h = h.view(B, T, d)
            if l == L + 1:
                return h
            v = model.sublayer(l)(h).reshape(N, d)
            if block and made:
                buffer[done].add_(v)  # partial_n accumulates the block's sublayers
            else:
                buffer[done + made].copy_(v)
                made += 1
        done += made
    raise AssertionError("unreachable")


def default_depth_impl(v0: Tensor, recording: bool) -> str:
    """DESIGN.md §3's default depth path: the fastest exact one for this call.

    "fused" when the kernel applies (CUDA, triton, no autograd) and no internals are recorded;
    otherwise "sequential" on CUDA (H100, bf16: sequential beat two_phase at every shape, forward)
    and "two_phase" on CPU (faster at the shipped models' shape, fp32). Evidence and numbers:
    benchmarks/README.md, "Default depth path". Every path equals sequential to 1e-5 in fp32.
    """
    if v0.is_cuda:
        return "fused" if not recording and fused_applicable(v0) else "sequential"
    return "two_phase"


class GraphedForward:
    """``model(tokens).logits`` under no_grad for one fixed token shape, replayed as a CUDA graph.

    An explicit opt-in for fixed-shape inference (benchmarks' "+graph" rows): the forward's ~10^2
    kernel launches become one graph launch, so Python and launch overhead vanish. The graph reads
    the weights in place (updates to them are seen) but its token shape, depth_impl and autocast
    dtype are fixed at capture; the returned logits tensor is reused by the next call.
    """

    def __init__(self, model: Model, tokens: Tensor, depth_impl: str | None = None, dtype=None, warmup=3):
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
        self.tokens.copy_(tokens)
        self.graph.replay()
        return self.logits
