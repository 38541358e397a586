"""The Triton kernel behind ``attnres.kernels.depth_attend``; imported only when triton is present.

One program owns BLOCK_N rows (tokens) and all G queries of a launch. It streams the K sources
once: for each source row it takes the inverse RMS (the key norm, its gain folded into the
queries), G logits, and folds the row into G online-softmax accumulators held in registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

REGISTER_BUDGET = 8192  # fp32 accumulator elements per program: G_BLOCK * BLOCK_N * BLOCK_D


@triton.jit
def _depth_attend_kernel(
    src_ptr,
    q_ptr,
    h_ptr,
    m_ptr,
    s_ptr,
    h0_ptr,
    m0_ptr,
    s0_ptr,
    K,
    N,
    D,
    G,
    eps,
    stride_src_k,
    stride_src_n,
    stride_h_g,
    stride_h_n,
    HAS_STATE: tl.constexpr,
    G_BLOCK: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    wide_rows = rows.to(tl.int64)  # row * stride can pass 2**31 on large batches
    cols = tl.arange(0, BLOCK_D)  # [BD]
    gs = tl.arange(0, G_BLOCK)  # [GB]
    row_ok, col_ok, g_ok = rows < N, cols < D, gs < G
    q = tl.load(q_ptr + gs[:, None] * D + cols[None, :], mask=g_ok[:, None] & col_ok[None, :], other=0.0)
    ms_offs = gs[:, None] * N + rows[None, :]  # [GB, BN] into m, s: [G, N] contiguous
    ms_mask = g_ok[:, None] & row_ok[None, :]
    h_offs = gs[:, None, None] * stride_h_g + wide_rows[None, :, None] * stride_h_n + cols[None, None, :]
    h_mask = ms_mask[:, :, None] & col_ok[None, None, :]
    if HAS_STATE:  # resume an earlier softmax: acc = h * s at max m
        m = tl.load(m0_ptr + ms_offs, mask=ms_mask, other=float("-inf"))
        s = tl.load(s0_ptr + ms_offs, mask=ms_mask, other=0.0)
        acc = tl.load(h0_ptr + h_offs, mask=h_mask, other=0.0).to(tl.float32) * s[:, :, None]
    else:
        m = tl.full([G_BLOCK, BLOCK_N], float("-inf"), tl.float32)
        s = tl.zeros([G_BLOCK, BLOCK_N], tl.float32)
        acc = tl.zeros([G_BLOCK, BLOCK_N, BLOCK_D], tl.float32)
    src_offs = wide_rows[:, None] * stride_src_n + cols[None, :]
    src_mask = row_ok[:, None] & col_ok[None, :]
    source_ptr = src_ptr  # advanced one source at a time: 64-bit pointer, no int32 k * stride product
    for _ in range(0, K):
        v = tl.load(source_ptr + src_offs, mask=src_mask, other=0.0).to(tl.float32)  # [BN, BD]
        inv_rms = tl.rsqrt(tl.sum(v * v, axis=1) / D + eps)  # [BN]
        logit = tl.sum(v[None, :, :] * q[:, None, :], axis=2) * inv_rms[None, :]  # [GB, BN]
        m_new = tl.maximum(m, logit)
        scale = tl.exp(m - m_new)  # 0 on the first source (m = -inf)
        p = tl.exp(logit - m_new)
        acc = acc * scale[:, :, None] + p[:, :, None] * v[None, :, :]
        s = s * scale + p
        m = m_new
        source_ptr += stride_src_k
    h = acc / s[:, :, None]
    tl.store(h_ptr + h_offs, h.to(h_ptr.dtype.element_ty), mask=h_mask)
    tl.store(m_ptr + ms_offs, m, mask=ms_mask)
    tl.store(s_ptr + ms_offs, s, mask=ms_mask)


def launch(sources: Tensor, queries: Tensor, eps: float, state, out=None) -> tuple[Tensor, Tensor, Tensor]:
    """sources [K, N, d] (rows contiguous), queries [G, d] fp32 contiguous, state or None.

    Returns h [G, N, d] (sources' dtype), m [G, N], s [G, N] (fp32), written into ``out`` when
    given (contiguous; ``out`` may be ``state`` itself: each program reads its rows before writing).
    """
    K, N, D = sources.shape
    G = queries.shape[0]
    if out is None:
        h = sources.new_empty(G, N, D)
        m = torch.empty((G, N), device=sources.device, dtype=torch.float32)
        s = torch.empty_like(m)
    else:
        h, m, s = out
    g_block = triton.next_power_of_2(G)
    block_d = triton.next_power_of_2(D)
    fit = max(1, min(64, REGISTER_BUDGET // (g_block * block_d)))
    block_n = 1 << (fit.bit_length() - 1)  # largest power of two that fits the register budget
    h0, m0, s0 = state if state is not None else (h, m, s)  # unused pointers when HAS_STATE is off
    grid = (triton.cdiv(N, block_n),)
    _depth_attend_kernel[grid](
        sources,
        queries,
        h,
        m,
        s,
        h0,
        m0,
        s0,
        K,
        N,
        D,
        G,
        eps,
        sources.stride(0),
        sources.stride(1),
        h.stride(0),
        h.stride(1),
        HAS_STATE=state is not None,
        G_BLOCK=g_block,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        num_warps=4 if g_block * block_n * block_d <= 2048 else 8,
    )
    return h, m, s
