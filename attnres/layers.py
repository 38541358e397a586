"""The building blocks of the GPT in model.py.

Norms, causal self-attention, the MLP, the depth-attention site of AttnRes, and one Transformer
block (two sublayers, each with its PreNorm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm run in its gain's dtype.

    Under bf16 autocast a depth mix can hand it a bf16 input with an fp32 gain, and PyTorch then
    skips its fused kernel ("Mismatch dtype between input and weight"); autocast treats LayerNorm
    the same way (fp32). A no-op in fp32.
    """

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, d] -> [B, T, d]."""
        return super().forward(x.to(self.weight.dtype))


def make_norm(config: ModelConfig) -> nn.Module:
    """The sublayer / final norm: RMSNorm (ours) or LayerNorm (imported GPT-2 family)."""
    if config.norm == "layernorm":
        return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
    return RMSNorm(config.d_model, eps=config.norm_eps)


def rotary_angles(T: int, d_head: int, config: ModelConfig, device) -> tuple[Tensor, Tensor]:
    """cos and sin [T, d_head] of RoPE.

    Position t turns pair (j, j + d_head/2) by t * f_j, with
    f_j = rope_theta^(-2j / d_head) / rope_linear_factor (fp32, as Llama computes them).
    """
    exponent = torch.arange(0, d_head, 2, dtype=torch.int64, device=device).float() / d_head
    freq = 1.0 / (config.rope_theta**exponent) / config.rope_linear_factor  # [d_head / 2]
    angles = torch.outer(torch.arange(T, device=device).float(), freq)  # [T, d_head / 2]
    angles = torch.cat((angles, angles), dim=-1)  # the two halves of a head share frequencies
    return angles.cos(), angles.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, H, T, hd] rotated by RoPE (the halves convention of GPT-NeoX and Llama)."""
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((-second, first), dim=-1) * sin.to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention.

    With n_kv_head < n_head it is grouped-query attention (each key/value head serves
    n_head / n_kv_head query heads); c_attn holds [q; k; v] stacked.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.n_head, self.n_kv, self.d_head = config.n_head, config.kv_heads, config.d_head
        self.widths = [self.n_head * self.d_head] + 2 * [self.n_kv * self.d_head]  # q, k, v
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.d_model, sum(self.widths), bias=config.qkv_has_bias)
        self.c_proj = nn.Linear(self.widths[0], config.d_model, bias=config.out_has_bias)
        if config.qk_norm:  # Qwen3 / fla: one RMSNorm over each head's width, before RoPE
            self.q_norm = RMSNorm(self.d_head, eps=config.q_k_norm_eps)
            self.k_norm = RMSNorm(self.d_head, eps=config.q_k_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, d] -> [B, T, d]."""
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split(self.widths, dim=2)
        q, k, v = (t.view(B, T, -1, self.d_head) for t in (q, k, v))  # [B, T, heads, hd]
        if self.config.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, T, hd]
        if self.config.rotary:
            cos, sin = rotary_angles(T, self.d_head, self.config, x.device)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        p = self.dropout if self.training else 0.0
        gqa = {"enable_gqa": True} if self.n_kv != self.n_head else {}
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, **gqa)  # [B, H, T, hd]
        return self.c_proj(y.transpose(1, 2).reshape(B, T, self.widths[0]))


class MLP(nn.Module):
    """The MLP: c_proj(act(c_fc x)).

    Gated (mlp="gated"), c_fc holds [gate; up] and the output is c_proj(act(gate x) * up x); with
    activation "silu" that is Llama's SwiGLU.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gated = config.mlp == "gated"
        self.c_fc = nn.Linear(config.d_model, (1 + self.gated) * config.hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.hidden, config.d_model, bias=config.bias)
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU("tanh"), "relu": nn.ReLU(), "silu": nn.SiLU()}[
            config.activation
        ]

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, d] -> [B, T, d]."""
        if self.gated:
            gate, up = self.c_fc(x).chunk(2, dim=-1)
            return self.c_proj(self.act(gate) * up)
        return self.c_proj(self.act(self.c_fc(x)))


class DepthAttention(nn.Module):
    """One site's softmax over depth: alpha_i = softmax_i(w . RMSNorm(v_i)) (paper Eq. 2-3).

    The query w is zero-initialised, so a fresh model averages its sources uniformly.
    Keys are RMS-normalised (learnable gain), values stay raw; no temperature, no 1/sqrt(d).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(config.d_model))
        # key_norm_eps == norm_eps unless an imported peer used its own (config.depth_norm_eps)
        self.norm = RMSNorm(config.d_model, eps=config.key_norm_eps)
        if config.depth_recency_bias:  # qwen3_attnres: a learned scalar on the newest source's logit
            self.recency_bias = nn.Parameter(torch.zeros(()))

    def weights(self, sources: Tensor) -> Tensor:
        """sources [K, B, T, d] -> alpha [B, T, K], a softmax over K per token."""
        logits = self.norm(sources) @ self.query  # [K, B, T]
        return self.biased(logits.float().permute(1, 2, 0)).softmax(-1).to(sources.dtype)

    def biased(self, logits: Tensor) -> Tensor:
        """logits [B, T, K] with the recency bias (if any) added to the newest source, k = K-1."""
        if not hasattr(self, "recency_bias"):
            return logits
        return torch.cat([logits[..., :-1], logits[..., -1:] + self.recency_bias.float()], dim=-1)

    def folded_query(self) -> Tensor:
        """w * g: the query with the key norm's gain folded in, for pre-normalised keys."""
        return self.query * self.norm.weight


class Block(nn.Module):
    """One Transformer block = two sublayers, each with its own PreNorm (and depth site)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = make_norm(config)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)
        if config.residual != "prenorm":
            self.attn_res = DepthAttention(config)  # site 2i+1
            self.mlp_res = DepthAttention(config)  # site 2i+2

    def attention(self, h: Tensor) -> Tensor:
        """v_l = f_l(Norm_l(h_l)) for the attention sublayer (l odd)."""
        return self.drop(self.attn(self.attn_norm(h)))  # v_l = f_l(Norm_l(h_l)), l odd

    def feedforward(self, h: Tensor) -> Tensor:
        """v_l = f_l(Norm_l(h_l)) for the MLP sublayer (l even)."""
        return self.drop(self.mlp(self.mlp_norm(h)))  # v_l = f_l(Norm_l(h_l)), l even
