"""The building blocks of the GPT in model.py: norms, causal self-attention, the MLP, the
depth-attention site of AttnRes, and one Transformer block (two sublayers, each with its PreNorm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm run in its gain's dtype. Under bf16 autocast a depth mix can hand it a bf16 input
    with an fp32 gain, and PyTorch then skips its fused kernel ("Mismatch dtype between input and
    weight"); autocast treats LayerNorm the same way (fp32). A no-op in fp32."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.to(self.weight.dtype))


def make_norm(config: ModelConfig) -> nn.Module:
    """The sublayer / final norm: RMSNorm (ours) or LayerNorm (imported GPT-2 family)."""
    if config.norm == "layernorm":
        return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
    return RMSNorm(config.d_model, eps=config.norm_eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, T, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (t.view(B, T, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # [B, H, T, hd]
        return self.c_proj(y.transpose(1, 2).reshape(B, T, d))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.hidden, config.d_model, bias=config.bias)
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU("tanh"), "relu": nn.ReLU()}[config.activation]

    def forward(self, x: Tensor) -> Tensor:
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

    def weights(self, sources: Tensor) -> Tensor:
        """sources [K, B, T, d] -> alpha [B, T, K], a softmax over K per token."""
        logits = self.norm(sources) @ self.query  # [K, B, T]
        return logits.float().permute(1, 2, 0).softmax(-1).to(sources.dtype)

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
        return self.drop(self.attn(self.attn_norm(h)))  # v_l = f_l(Norm_l(h_l)), l odd

    def feedforward(self, h: Tensor) -> Tensor:
        return self.drop(self.mlp(self.mlp_norm(h)))  # v_l = f_l(Norm_l(h_l)), l even
