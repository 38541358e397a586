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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

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


def _use_triton(backend: str, on_cuda: bool) -> bool:
    """Whether to launch the kernel: backend "triton" (which must import), or "auto" on CUDA."""
    if backend == "triton" and _triton() is None:
        raise RuntimeError("the triton backend was requested but triton cannot be imported")
    return backend == "triton" or (backend == "auto" and on_cuda and _triton() is not None)


def _query_chunks(n_queries: int) -> list[slice]:
    """The queries one launch takes: at most MAX_QUERIES_PER_LAUNCH (accumulators in registers)."""
    return [slice(g, g + MAX_QUERIES_PER_LAUNCH) for g in range(0, n_queries, MAX_QUERIES_PER_LAUNCH)]


def depth_attend(
    sources: Tensor, queries: Tensor, eps: float, state: State | None = None, backend: str = "auto"
) -> State:
    """Depth softmax with folded keys: the Triton kernel on CUDA, the torch reference elsewhere.

    Same arguments and result as ``depth_attend_reference``; backend "auto" | "triton" | "torch".
    """
    if not _use_triton(backend, sources.is_cuda):
        return depth_attend_reference(sources, queries, eps, state)
    K, d = sources.shape[0], sources.shape[-1]
    flat = sources.reshape(K, -1, d).contiguous()
    if state is not None:
        h0, m0, s0 = state
        state = (
            h0.reshape(-1, flat.shape[1], d).contiguous(),
            m0.float().contiguous(),
            s0.float().contiguous(),
        )
    parts = [
        _triton().launch(
            flat, queries[c].float().contiguous(), eps, None if state is None else tuple(x[c] for x in state)
        )
        for c in _query_chunks(queries.shape[0])
    ]
    return parts[0] if len(parts) == 1 else tuple(torch.cat(xs) for xs in zip(*parts, strict=True))


def _attend_into(sources: Tensor, queries: Tensor, eps: float, out: State, *, resume: bool, triton: bool):
    """Depth softmax of queries [G, d] over sources [K, N, d], written into out = (h, m, s).

    resume: continue from the state already in out (phase 2, in place). No allocation on Triton.
    """
    for c in _query_chunks(queries.shape[0]):
        part = out if queries.shape[0] <= MAX_QUERIES_PER_LAUNCH else tuple(x[c] for x in out)
        if triton:
            _triton().launch(sources, queries[c], eps, part if resume else None, out=part)
        else:
            result = depth_attend_reference(sources, queries[c], eps, part if resume else None)
            for dst, src in zip(part, result, strict=True):
                dst.copy_(src)


@dataclass(frozen=True)
class TwoPhasePlan:
    """What the two-phase forward needs of a model, as plain values (``Model.two_phase_plan``)."""

    groups: list[range]  # sites batched together, in order; the readout L+1 last, alone
    queries: Tensor  # [L+1, d] fp32 folded queries w_l * g_l; row l-1 is site l
    sublayer: Callable[[int, Tensor], Tensor]  # (l, h_l [B, T, d]) -> v_l = f_l(Norm_l(h_l))
    eps: float  # the key norms' eps
    block: bool  # Block AttnRes: a group's outputs add up into one partial source
    n_sources: int  # sources completed at the readout, v_0 included (Full L+1, Block N+1)


def _source_buffer(v0: Tensor, n_sources: int) -> Tensor:
    """[n_sources, N, d] room for every source, v_0 written into row 0.

    Under autocast it is stored in the autocast dtype, as the sequential path keeps v_l and Block's
    partial sums (half the bytes to read); the states h (the sublayers' inputs) stay in v0's dtype.
    """
    kind, d = v0.device.type, v0.shape[-1]
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else v0.dtype
    buffer = v0.new_empty(n_sources, v0.shape[0] * v0.shape[1], d, dtype=dtype)
    buffer[0].copy_(v0.reshape(-1, d))
    return buffer


@torch.no_grad()
def fused_two_phase(v0: Tensor, plan: TwoPhasePlan, backend: str = "auto") -> Tensor:
    """Paper Alg. 1 on the depth kernel; returns h_{L+1} [B, T, d]. Inference only (no autograd).

    Same groups as ``Model._two_phase``: phase 1 attends a group's G queries over the completed
    sources in one launch; phase 2 resumes each site's state with the sources made inside the group
    (Full: its earlier layers; Block: the running partial sum, kept in place in the buffer).
    The sources live in one buffer and the (h, m, s) states in another, both allocated once per
    forward; phase 2 updates a site's state in place; nothing synchronises with the host, so the
    whole forward can be captured in a CUDA graph (``benchmarks/cuda_graph.py``).
    """
    triton, (B, T, d) = _use_triton(backend, v0.is_cuda), v0.shape
    readout, buffer = plan.queries.shape[0], _source_buffer(v0, plan.n_sources)
    g_max = max(len(sites) for sites in plan.groups)
    m_all = torch.empty(g_max, B * T, device=v0.device, dtype=torch.float32)
    states = (v0.new_empty(g_max, B * T, d), m_all, torch.empty_like(m_all))  # reused group after group
    done = 1  # sources completed before the current group
    for sites in plan.groups:
        queries = plan.queries[sites.start - 1 : sites.stop - 1]  # [G, d], a contiguous view
        _attend_into(buffer[:done], queries, plan.eps, tuple(x[: len(sites)] for x in states), resume=False,
                     triton=triton)  # fmt: skip
        made = 0  # sources made inside this group so far (Block: at most 1, the partial)
        for j, l in enumerate(sites):
            if made:  # phase 2, in place
                _attend_into(buffer[done : done + made], queries[j : j + 1], plan.eps,
                             tuple(x[j : j + 1] for x in states), resume=True, triton=triton)  # fmt: skip
            h = states[0][j].view(B, T, d)
            if l == readout:
                return h
            v = plan.sublayer(l, h).reshape(B * T, d)
            if plan.block and made:
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
