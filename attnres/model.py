"""A GPT with three residual rules: PreNorm, Full AttnRes and Block AttnRes.

Kimi Team, "Attention Residuals", arXiv 2603.15031. Notation follows shared/DESIGN.md §1:
sublayers (each attention and each MLP) are numbered l = 1..L with L = 2 * n_layer;
v_0 is the embedding, v_l = f_l(Norm_l(h_l)) the raw output of sublayer l, and h_l its input.

    PreNorm     h_l = v_0 + sum_{i<l} v_i
    Full        h_l = sum_{i<l} alpha_{i->l} v_i,  alpha_{.->l} = softmax_i(w_l . RMSNorm_l(v_i))
    Block       the same softmax, over block sums b_0 = v_0, b_1..b_{n-1} and the partial sum of
                the current block (absent at a block's first layer)

Site L+1 is the output readout: AttnRes models aggregate once more before the final norm.
Imported peers may fix that mix instead (config.readout "none" / "sum") or start block 1 from the
embedding (config.first_block_has_embedding); sources.py holds both rules, docs/formats.md who uses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from . import kernels
from .config import ModelConfig
from .layers import Block, DepthAttention, make_norm
from .sources import SourceRule

if TYPE_CHECKING:
    from .import_report import ImportReport

# A mixer replaces the weighted sum at a site (used by probes for ablation and attribution):
# mixer(site, sources [K, B, T, d], weights [B, T, K] or None for PreNorm) -> h [B, T, d].
Mixer = Callable[[int, Tensor, Tensor | None], Tensor]


@dataclass
class Internals:
    """What the model computed on the way (all detached); see DESIGN.md §3 for the labels."""

    embedding: Tensor  # [B, T, d] v_0
    layer_inputs: list[Tensor]  # L+1 x [B, T, d]: h_1..h_L, h_{L+1}
    sublayer_outputs: list[Tensor]  # L x [B, T, d]: v_1..v_L
    depth_weights: list[Tensor] | None  # L+1 x [B, T, K_l]; None for PreNorm
    depth_sources: list[tuple[str, ...]]  # L+1 label tuples, one per site


@dataclass
class ModelOutput:
    logits: Tensor  # [B, T, vocab]
    loss: Tensor | None  # mean next-token cross-entropy when targets are given
    internals: Internals | None  # when return_internals=True


class _Recorder:
    """Collects detached internals as the forward pass runs."""

    def __init__(self, model: Model, embedding: Tensor):
        self.model = model
        self.it = Internals(embedding.detach(), [], [], [], [])

    def site(self, l: int, h: Tensor, weights: Tensor | None) -> None:
        self.it.layer_inputs.append(h.detach())
        self.it.depth_sources.append(self.model.depth_source_labels(l))
        if weights is not None:
            self.it.depth_weights.append(weights.detach())

    def output(self, v: Tensor) -> None:
        self.it.sublayer_outputs.append(v.detach())

    def result(self) -> Internals:
        if self.model.config.residual == "prenorm":
            self.it.depth_weights = None
        return self.it


class _SkipInit(TorchFunctionMode):
    """Makes torch.nn.init and the in-place fills return their tensor untouched. On the meta device
    they would otherwise run PyTorch's Python reference ops, whose first call imports torch._dynamo
    (1.5-2.2 s, once per process, measured on the CPU test machine)."""

    SKIPPED = frozenset(
        [getattr(nn.init, name) for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]
        + [Tensor.normal_, Tensor.uniform_, Tensor.fill_, Tensor.zero_]
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def empty_model(config: ModelConfig, tokenizer=None) -> Model:
    """A Model on the meta device, no initialisation run: its shapes, for loading weights into
    (``load_state_dict(..., assign=True)``) or for counting parameters."""
    with torch.device("meta"), _SkipInit():
        return Model(config, tokenizer)


def _unit_rms(x: Tensor, eps: float) -> Tensor:
    """RMSNorm without its gain: x / rms(x). Shared by every site, so computed once per source."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class Model(nn.Module):
    """GPT language model; ``config.residual`` picks PreNorm, Full or Block AttnRes."""

    import_report: ImportReport | None = None  # what loading found (set by the loaders)

    def __init__(self, config: ModelConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        # RoPE models turn q and k instead (layers.py); jibran's does both
        self.wpe = nn.Embedding(config.block_size, config.d_model) if config.learned_positions else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        if config.residual != "prenorm" and config.readout == "attnres":
            self.out_res = DepthAttention(config)  # site L+1, the output readout (a fixed mix has none)
        self.final_norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # ---- structure -------------------------------------------------------------------------
    def sublayer(self, l: int) -> Callable[[Tensor], Tensor]:
        """f_l composed with its PreNorm, for l = 1..L (odd: attention, even: MLP)."""
        block = self.blocks[(l - 1) // 2]
        return block.attention if l % 2 else block.feedforward

    def site(self, l: int) -> DepthAttention:
        """The depth attention that builds h_l, l = 1..L+1 (AttnRes models only)."""
        if l == self.config.n_sublayers + 1:
            return self.out_res
        block = self.blocks[(l - 1) // 2]
        return block.attn_res if l % 2 else block.mlp_res

    def depth_source_labels(self, l: int) -> tuple[str, ...]:
        """Labels of the sources that site l reads (DESIGN.md §3; the rule lives in sources.py)."""
        return SourceRule.of(self.config).labels(l)

    def readout(self, h: Tensor) -> Tensor:
        """Final norm then LM head: logits from any stream state (also the logit lens)."""
        return self.lm_head(self.final_norm(h))

    # ---- forward -------------------------------------------------------------------------
    def forward(
        self,
        tokens: Tensor,
        targets: Tensor | None = None,
        return_internals: bool = False,
        depth_impl: str | None = None,
        mixer: Mixer | None = None,
    ) -> ModelOutput:
        """tokens [B, T] -> logits [B, T, vocab] (+ loss, + internals).

        depth_impl: "sequential" (the literal equations) or "two_phase" (paper Alg. 1); "fused" is
        two_phase on the Triton kernel of kernels.py (CUDA, under no_grad, no internals), else
        two_phase. None picks the fastest exact path (kernels.default_depth_impl). A mixer forces
        the sequential path; with depth_impl="two_phase" its weights come from keys normalised once
        per source (two_phase's identity: equal up to rounding, faster for many sources).
        """
        B, T = tokens.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds the context of {self.config.block_size}")
        if depth_impl not in (None, "sequential", "two_phase", "fused"):
            raise ValueError(f"depth_impl must be 'sequential', 'two_phase' or 'fused', got {depth_impl!r}")
        pos = torch.arange(T, device=tokens.device)
        emb = self.wte(tokens) if self.wpe is None else self.wte(tokens) + self.wpe(pos)
        v0 = self.drop(emb)  # [B, T, d] = v_0
        rec = _Recorder(self, v0) if return_internals else None
        attnres = self.config.residual != "prenorm"
        shared_keys = mixer is not None and depth_impl == "two_phase"
        if depth_impl is None:  # DESIGN.md §3: fastest exact path here (evidence: benchmarks/README.md)
            depth_impl = kernels.default_depth_impl(v0, recording=rec is not None)
        if (
            self.config.readout != "attnres"
            or self.config.first_block_has_embedding
            or self.config.depth_recency_bias
        ):
            depth_impl = "sequential"  # peers' conventions: the two-phase and fused paths run ours only
        fused = depth_impl == "fused" and rec is None and kernels.fused_applicable(v0)
        if attnres and mixer is None and fused:  # inference-only kernel path (issue #8)
            h_out = kernels.fused_two_phase(self, v0)
        elif attnres and mixer is None and depth_impl != "sequential":
            h_out = self._two_phase(v0, rec)
        else:
            h_out = self._sequential(v0, rec, mixer, shared_keys)
        logits = self.readout(h_out)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return ModelOutput(logits, loss, rec.result() if rec else None)

    def _sequential(
        self, v0: Tensor, rec: _Recorder | None, mixer: Mixer | None, shared_keys=False
    ) -> Tensor:
        """The equations as written, one site at a time; returns h_{L+1}."""
        cfg, L, rule = self.config, self.config.n_sublayers, SourceRule.of(self.config)
        completed = [v0]  # Full: v_0..v_{l-1}; Block: b_0..b_{n-1}
        partial = v0 if rule.first_block_has_embedding else None  # a peer's block 1 starts from v_0
        stream = v0  # PreNorm: h_l = v_0 + sum_{i<l} v_i, kept as a running sum
        # shared_keys (a mixer run with depth_impl="two_phase", e.g. attribution's gated passes): each
        # completed source's unit-RMS key is kept, instead of normalising every source at every site.
        eps, keys = cfg.key_norm_eps, ([] if shared_keys and cfg.residual != "prenorm" else None)
        for l in range(1, L + 2):
            sources = completed + ([partial] if partial is not None else [])
            if keys is not None:
                keys += [_unit_rms(v, eps) for v in completed[len(keys) :]]
                site_keys = keys + ([_unit_rms(partial, eps)] if partial is not None else [])
            h, weights = self._mix(l, sources, stream, mixer, None if keys is None else site_keys)
            if rec:
                rec.site(l, h, weights)
            if l == L + 1:
                return h
            v = self.sublayer(l)(h)  # v_l = f_l(Norm_l(h_l))
            if rec:
                rec.output(v)
            stream = stream + v
            partial = v if partial is None else partial + v  # b_n accumulates its sublayers
            if rule.ends_block(l):  # the last block ends at L, even when shorter
                completed, partial = completed + [partial], None
        raise AssertionError("unreachable")

    def _mix(self, l: int, sources: list[Tensor], stream: Tensor, mixer: Mixer | None, keys=None):
        if self.config.residual == "prenorm" and mixer is None:
            return stream, None
        stacked = torch.stack(sources)  # [K, B, T, d]
        weights = self._fixed_readout(l, stacked)  # [B, T, K] or None
        if (
            weights is None and keys is not None
        ):  # w . RMSNorm_l(v) = (w * g_l) . v / rms(v), keys = v / rms(v)
            logits = torch.einsum("kbtd,d->btk", torch.stack(keys), self.site(l).folded_query())
            weights = self.site(l).biased(logits.float()).softmax(-1).to(stacked.dtype)
        elif weights is None and self.config.residual != "prenorm":
            weights = self.site(l).weights(stacked)  # [B, T, K]
        if mixer is None:
            return torch.einsum("btk,kbtd->btd", weights, stacked), weights
        return mixer(l, stacked, weights), weights

    def _fixed_readout(self, l: int, stacked: Tensor) -> Tensor | None:
        """A peer's readout without a learned query (config.readout "none" / "sum"): its fixed weights
        [B, T, K] over the blocks (sources.py); None at every other site."""
        fixed = SourceRule.of(self.config).readout_coefficients()
        if l <= self.config.n_sublayers or fixed is None:
            return None
        return torch.tensor(fixed, dtype=stacked.dtype, device=stacked.device).expand(*stacked.shape[1:3], -1)

    def _groups(self) -> list[range]:
        """Sites batched together by the two-phase path: Block's blocks, Full's chunks, readout."""
        L = self.config.n_sublayers
        size = self.config.attnres_block_size if self.config.residual == "block" else None
        size = size or max(1, math.isqrt(L))
        return [range(a, min(a + size, L + 1)) for a in range(1, L + 1, size)] + [range(L + 1, L + 2)]

    def _two_phase(self, v0: Tensor, rec: _Recorder | None) -> Tensor:
        """Paper Algorithm 1. Phase 1 batches a group's queries against the completed sources
        (returning output, max and sum-exp); phase 2 merges the sources made inside the group
        by online softmax. Keys are normalised once per source: w . RMSNorm_l(v) = (w*g_l) . v/rms(v).
        """
        eps, block = self.config.key_norm_eps, self.config.residual == "block"  # the key norms' eps
        completed, units = [v0], [_unit_rms(v0, eps)]
        for sites in self._groups():
            values, keys = torch.stack(completed), torch.stack(units)  # [K, B, T, d]
            queries = torch.stack([self.site(l).folded_query() for l in sites])  # [G, d]
            logits = torch.einsum("kbtd,gd->gbtk", keys, queries).float()  # phase 1
            m = logits.amax(-1, keepdim=True)  # [G, B, T, 1]
            p = (logits - m).exp()
            s = p.sum(-1, keepdim=True)
            out = torch.einsum("gbtk,kbtd->gbtd", (p / s).to(values.dtype), values)
            inner, inner_units = [], []  # sources made inside this group
            for j, l in enumerate(sites):
                h, weights = self._merge(out[j], m[j], s[j], p[j], queries[j], inner, inner_units)
                if rec:
                    rec.site(l, h, weights)
                if l == self.config.n_sublayers + 1:
                    return h
                v = self.sublayer(l)(h)
                if rec:
                    rec.output(v)
                inner = [inner[0] + v if inner else v] if block else inner + [v]
                inner_units = (inner_units[:0] if block else inner_units) + [_unit_rms(inner[-1], eps)]
            completed, units = completed + inner, units + inner_units
        raise AssertionError("unreachable")

    @staticmethod
    def _merge(out, m, s, p, query, inner, inner_units):
        """Phase 2: fold the group-internal sources into (out, max, sum-exp) by online softmax."""
        if not inner:
            return out, (p / s).to(out.dtype)
        values, keys = torch.stack(inner), torch.stack(inner_units)  # [J, B, T, d]
        logits = torch.einsum("jbtd,d->btj", keys, query).float()
        m_new = torch.maximum(m, logits.amax(-1, keepdim=True))
        old = s * (m - m_new).exp()  # phase-1 mass, rescaled to the new max
        e = (logits - m_new).exp()
        total = old + e.sum(-1, keepdim=True)
        h = out * (old / total).to(out.dtype) + torch.einsum(
            "btj,jbtd->btd", (e / total).to(out.dtype), values
        )
        weights = torch.cat([p * (old / s) / total, e / total], dim=-1)
        return h, weights.to(out.dtype)

    # ---- helpers -------------------------------------------------------------------------
    def num_params(self) -> int:
        """Parameters counted once (a tied head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate(
        self,
        tokens: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Samples max_new_tokens continuations of tokens [B, T] (window = context)."""
        for _ in range(max_new_tokens):
            logits = self(tokens[:, -self.config.block_size :]).logits[:, -1, :] / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            tokens = torch.cat([tokens, nxt], dim=1)
        return tokens
