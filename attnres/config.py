"""ModelConfig: the frozen description of a model, stored as ``config.json`` (DESIGN.md §2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .sources import SourceRule

RESIDUALS = ("prenorm", "full", "block")
NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")

# Bounds that keep a hostile config.json from allocating the machine away.
LIMITS = {
    "vocab_size": 1_000_000,
    "block_size": 1_000_000,
    "n_layer": 512,
    "n_head": 1024,
    "d_model": 65_536,
    "d_mlp": 262_144,
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a GPT-style language model with one of three residual rules.

    Only the first six fields are required by the checkpoint format; the others
    default to the shipped models' choices and let imported GPT-2 / nanoGPT
    checkpoints run exactly (LayerNorm with bias, tanh-GELU, tied head).
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
        if self.d_model % self.n_head:
            return f"'d_model' ({self.d_model}) must be divisible by 'n_head' ({self.n_head})"
        if self.residual not in RESIDUALS:
            return f"'residual' must be one of {', '.join(RESIDUALS)}, got {self.residual!r}"
        if self.residual == "block":
            size = self.attnres_block_size
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                return f"a 'block' model needs 'attnres_block_size' >= 1 (sublayers), got {size!r}"
        return self._layer_problem()

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
        """MLP hidden width."""
        return self.d_mlp or 4 * self.d_model

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
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
