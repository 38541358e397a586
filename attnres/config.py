"""ModelConfig: the frozen description of a model, stored as ``config.json`` (DESIGN.md §2)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from .sources import SourceRule

RESIDUALS = ("prenorm", "full", "block")
NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
POSITIONS = ("learned", "rope", "learned+rope")
MLPS = ("plain", "gated")
# Fields added for the Llama-family block (all default to the GPT block).
FAMILY_FIELDS = (
    "position", "rope_theta", "rope_linear_factor", "mlp", "n_kv_head", "head_dim",
    "qkv_bias", "attn_out_bias", "qk_norm", "qk_norm_eps",
)  # fmt: skip
# Named sets of the block fields below, for training (``attnres.train --block``) and the lab.
# "gpt" is every field's default; "llama" is the Llama block: RoPE, SwiGLU, RMSNorm, no biases.
BLOCK_FAMILIES = {
    "gpt": {},
    "llama": {"position": "rope", "mlp": "gated", "activation": "silu"},
}
BLOCK_NAMES = {"gpt": "GPT", "llama": "Llama-style (RoPE, SwiGLU)"}  # what a person reads
READOUTS = ("attnres", "none", "sum")
# Fields added after the first checkpoints; the fingerprint leaves them out at their defaults.
LATER_FIELDS = (*FAMILY_FIELDS, "readout", "first_block_has_embedding")

# Bounds that keep a hostile config.json from allocating the machine away.
LIMITS = {
    "vocab_size": 1_000_000,
    "block_size": 1_000_000,
    "n_layer": 512,
    "n_head": 1024,
    "d_model": 65_536,
    "d_mlp": 262_144,
    "head_dim": 4096,
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a GPT-style language model with one of three residual rules.

    Only the first six fields are required by the checkpoint format; the others
    default to the shipped models' choices and let imported GPT-2 / nanoGPT
    checkpoints run exactly (LayerNorm with bias, tanh-GELU, tied head). The fields from
    ``position`` on describe the Llama-family block (Llama, Qwen2, Qwen3, Mistral, fla's
    Transformer); their defaults are the GPT block, so older config.json files load unchanged.
    """

    vocab_size: int  # number of token ids
    block_size: int  # context length (learned positions)
    n_layer: int  # Transformer blocks; L = 2 * n_layer sublayers
    n_head: int  # attention heads
    d_model: int  # width of the residual stream
    residual: str = "prenorm"  # "prenorm" | "full" | "block"
    attnres_block_size: int | None = None  # S, in sublayers (block only)
    norm_eps: float = 1e-6  # eps of every RMSNorm / LayerNorm
    norm: str = "rmsnorm"  # sublayer and final norm: "rmsnorm" | "layernorm"
    bias: bool = False  # biases in linear layers and LayerNorms
    activation: str = "gelu"  # MLP non-linearity: "gelu" | "gelu_tanh" | "relu"
    d_mlp: int | None = None  # MLP hidden width; None means 4 * d_model
    tie_embeddings: bool = True  # LM head shares the token embedding matrix
    dropout: float = 0.0  # dropout on embeddings and sublayer outputs
    depth_norm_eps: float | None = None  # eps of the depth-attention key norms; None = norm_eps
    #   (imported peers differ: nanogpt-attnres-repro keys use 1e-8 under 1e-5 LayerNorms)
    position: str = "learned"  # "learned": a wpe table added to v_0 | "rope": rotary q and k, no wpe
    #   | "learned+rope": both (jibran/Attention-Residuals)
    rope_theta: float = 10000.0  # RoPE base: frequency j of a head is rope_theta^(-2j / head_dim)
    rope_linear_factor: float = 1.0  # linear RoPE scaling: frequencies divided by it (1 = plain RoPE)
    mlp: str = "plain"  # "plain": c_proj(act(c_fc x)) | "gated": c_proj(act(gate x) * up x),
    #   c_fc holding [gate; up]; "gated" with activation "silu" is SwiGLU
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None = n_head
    head_dim: int | None = None  # width of one attention head; None = d_model // n_head
    qkv_bias: bool | None = None  # biases of the q/k/v projection (Qwen2: yes); None = bias
    attn_out_bias: bool | None = None  # bias of the attention output projection; None = bias
    qk_norm: bool = False  # per-head RMSNorm (gain [head_dim]) on q and k before RoPE (Qwen3, fla)
    qk_norm_eps: float | None = None  # eps of the q/k norms; None = norm_eps (fla uses 1e-5)
    # Conventions of imported AttnRes peers (docs/formats.md); the defaults are ours.
    readout: str = "attnres"  # h_{L+1}: "attnres" = a learned depth softmax (site L+1, ours) | "none" =
    #   the last block's sum (nanoGPT AttnRes PR, nanoAttnRes) | "sum" = v_1 + .. + v_L (jibran's)
    first_block_has_embedding: bool = False  # block 1's partial sum starts from v_0, so v_0 is counted
    #   in b_0 and in b_1 (nanoGPT AttnRes PR, qwen3_attnres); Block only
    depth_recency_bias: bool = False  # every site adds a learned scalar to its newest source's logit
    #   (qwen3_attnres's attn_res_bias / mlp_res_bias / final_res_bias)

    def __post_init__(self):
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Returns one sentence saying what is wrong with this config, or None."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                return f"'{name}' must be an integer, got {value!r}"
            if not 1 <= value <= LIMITS[name]:
                return f"'{name}' must be between 1 and {LIMITS[name]}, got {value}"
        if self.d_mlp is not None and (
            not isinstance(self.d_mlp, int) or not 1 <= self.d_mlp <= LIMITS["d_mlp"]
        ):
            return f"'d_mlp' must be an integer between 1 and {LIMITS['d_mlp']}, got {self.d_mlp!r}"
        if self.residual not in RESIDUALS:
            return f"'residual' must be one of {', '.join(RESIDUALS)}, got {self.residual!r}"
        if self.residual == "block":
            size = self.attnres_block_size
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                return f"a 'block' model needs 'attnres_block_size' >= 1 (sublayers), got {size!r}"
        return self._convention_problem() or self._layer_problem()

    def _convention_problem(self) -> str | None:
        """The peer conventions: they only exist for depth attention."""
        if self.readout not in READOUTS:
            return f"'readout' must be one of {', '.join(READOUTS)}, got {self.readout!r}"
        if self.readout != "attnres" and self.residual == "prenorm":
            return f"readout {self.readout!r} needs an AttnRes residual ('full' or 'block'), not 'prenorm'"
        if not isinstance(self.first_block_has_embedding, bool):
            return (
                f"'first_block_has_embedding' must be true or false, got {self.first_block_has_embedding!r}"
            )
        if not isinstance(self.depth_recency_bias, bool) or (
            self.depth_recency_bias and self.residual == "prenorm"
        ):
            return (
                f"'depth_recency_bias' must be true (AttnRes only) or false, got {self.depth_recency_bias!r}"
            )
        if self.first_block_has_embedding and (self.residual != "block" or self.readout == "sum"):
            return "'first_block_has_embedding' needs residual 'block' and a readout other than 'sum'"
        return None

    def _layer_problem(self) -> str | None:
        """The layer choices (norm, activation) and the float fields (eps, dropout)."""
        if self.norm not in NORMS:
            return f"'norm' must be one of {', '.join(NORMS)}, got {self.norm!r}"
        if self.activation not in ACTIVATIONS:
            return f"'activation' must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
        if not isinstance(self.norm_eps, (int, float)) or not 0 < self.norm_eps < 1:
            return f"'norm_eps' must be a number in (0, 1), got {self.norm_eps!r}"
        if self.depth_norm_eps is not None and (
            not isinstance(self.depth_norm_eps, (int, float)) or not 0 < self.depth_norm_eps < 1
        ):
            return f"'depth_norm_eps' must be null or a number in (0, 1), got {self.depth_norm_eps!r}"
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            return f"'dropout' must be a number in [0, 1), got {self.dropout!r}"
        return self._attention_problem() or self._block_family_problem()

    def _attention_problem(self) -> str | None:
        """Head counts and widths (grouped-query attention, head_dim)."""
        for name in ("n_kv_head", "head_dim"):
            value, top = getattr(self, name), LIMITS.get(name, LIMITS["n_head"])
            if value is not None and (not _is_int(value) or not 1 <= value <= top):
                return f"'{name}' must be null or an integer between 1 and {top}, got {value!r}"
        if self.head_dim is None and self.d_model % self.n_head:
            return f"'d_model' ({self.d_model}) must be divisible by 'n_head' ({self.n_head})"
        if self.n_head % self.kv_heads:
            return f"'n_head' ({self.n_head}) must be a multiple of 'n_kv_head' ({self.kv_heads})"
        return None

    def _block_family_problem(self) -> str | None:
        """The Llama-family fields: positions, MLP kind, biases, q/k norm."""
        if self.position not in POSITIONS:
            return f"'position' must be one of {', '.join(POSITIONS)}, got {self.position!r}"
        if self.mlp not in MLPS:
            return f"'mlp' must be one of {', '.join(MLPS)}, got {self.mlp!r}"
        for name in ("rope_theta", "rope_linear_factor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                return f"'{name}' must be a positive number, got {value!r}"
        if self.rotary and self.d_head % 2:
            return f"rotary positions need an even head width, got {self.d_head}"
        for name in ("qkv_bias", "attn_out_bias"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                return f"'{name}' must be null, true or false, got {getattr(self, name)!r}"
        if not isinstance(self.qk_norm, bool):
            return f"'qk_norm' must be true or false, got {self.qk_norm!r}"
        if self.qk_norm_eps is not None and (
            not isinstance(self.qk_norm_eps, (int, float)) or not 0 < self.qk_norm_eps < 1
        ):
            return f"'qk_norm_eps' must be null or a number in (0, 1), got {self.qk_norm_eps!r}"
        return None

    @property
    def n_sublayers(self) -> int:
        """L: attention and MLP sublayers each count once."""
        return 2 * self.n_layer

    @property
    def key_norm_eps(self) -> float:
        """eps of the depth-attention key RMSNorms (defaults to norm_eps)."""
        return self.norm_eps if self.depth_norm_eps is None else self.depth_norm_eps

    @property
    def hidden(self) -> int:
        """MLP hidden width: d_mlp, else 4 d_model, or for a gated MLP 8/3 d_model.

        The gated default is rounded up to a multiple of 8 (Llama's choice: its three matrices then
        hold as many weights as a plain 4 d_model MLP).
        """
        if self.d_mlp:
            return self.d_mlp
        return 4 * self.d_model if self.mlp == "plain" else 8 * -(-8 * self.d_model // 24)

    @property
    def learned_positions(self) -> bool:
        """Whether v_0 adds a learned position table (wpe)."""
        return self.position in ("learned", "learned+rope")

    @property
    def rotary(self) -> bool:
        """Whether attention turns q and k by their positions (RoPE)."""
        return self.position in ("rope", "learned+rope")

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, else one per query head."""
        return self.n_kv_head or self.n_head

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.head_dim or self.d_model // self.n_head

    @property
    def qkv_has_bias(self) -> bool:
        """Whether the q/k/v projection has biases."""
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def out_has_bias(self) -> bool:
        """Whether the attention output projection has a bias."""
        return self.bias if self.attn_out_bias is None else self.attn_out_bias

    @property
    def q_k_norm_eps(self) -> float:
        """eps of the per-head q/k RMSNorms (defaults to norm_eps)."""
        return self.norm_eps if self.qk_norm_eps is None else self.qk_norm_eps

    @property
    def n_blocks(self) -> int:
        """N: depth-attention blocks (Block AttnRes); L for Full, 0 for PreNorm."""
        return SourceRule.of(self).N if self.residual != "prenorm" else 0

    def to_dict(self) -> dict:
        """Plain dict of every field (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> ModelConfig:
        """Builds a config from a dict, ignoring keys that are not fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})

    def fingerprint(self) -> str:
        """Short stable hash of the architecture, to tell runs apart in reports."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        fields = {  # later fields at their defaults left out: older fingerprints unchanged
            k: v for k, v in self.to_dict().items() if k not in LATER_FIELDS or v != defaults[k]
        }
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
