"""A GPT with three residual rules: PreNorm, Full AttnRes and Block AttnRes.

Kimi Team, "Attention Residuals", arXiv 2603.15031. Notation follows shared/DESIGN.md §1:
sublayers (each attention and each MLP) are numbered l = 1..L with L = 2 * n_layer;
v_0 is the embedding, v_l = f_l(Norm_l(h_l)) the raw output of sublayer l, and h_l its input.

    PreNorm     h_l = v_0 + sum_{i<l} v_i
    Full        h_l = sum_{i<l} alpha_{i->l} v_i,  alpha_{.->l} = softmax_i(w_l . RMSNorm_l(v_i))  (Eq. 2-3)
    Block       the same softmax, over block sums b_0 = v_0, b_1..b_{n-1} and the partial sum of
                the current block (absent at a block's first layer)

Site L+1 is the output readout: AttnRes models aggregate once more before the final norm.
Imported peers may fix that mix instead (config.readout "none" / "sum") or start block 1 from the
embedding (config.first_block_has_embedding); sources.py holds both rules, docs/formats.md who uses them.
Which outputs each source sums is ``sources.SourceRule``; the blocks (norms, attention, MLP, the
depth-attention site) are in layers.py. ``Model.sequential`` is the equations as written,
``Model._two_phase`` the paper's Algorithm 1; kernels.py runs Algorithm 1 on a fused kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import field_kernels, kernels
from ._plumbing import Recorder, SkipInit
from .config import ModelConfig
from .layers import Block, DepthAttention, make_norm
from .sources import SourceRule, weighted_sum

if TYPE_CHECKING:
    from .import_report import ImportReport

# A mixer replaces the weighted sum at a site (used by probes for ablation and attribution):
# mixer(site, sources [K, B, T, d], weights [B, T, K] or None for PreNorm) -> h [B, T, d].
Mixer = Callable[[int, Tensor, Tensor | None], Tensor]
DEPTH_IMPLS = (None, "sequential", "two_phase", "fused", *field_kernels.FIELD_IMPLS)


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
    """What ``Model.forward`` returns."""

    logits: Tensor  # [B, T, vocab]
    loss: Tensor | None  # mean next-token cross-entropy when targets are given
    internals: Internals | None  # when return_internals=True


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

    def embed(self, tokens: Tensor) -> Tensor:
        """v_0 [B, T, d]: token embedding (+ learned position), after dropout."""
        emb = self.wte(tokens)
        if self.wpe is not None:
            emb = emb + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        return self.drop(emb)

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
        shared_keys: bool = False,
    ) -> ModelOutput:
        """tokens [B, T] -> logits [B, T, vocab] (+ loss, + internals).

        Args:
            tokens: [B, T] token ids, T at most the context.
            targets: [B, T] next-token ids (-1 ignored) for ``loss``.
            return_internals: record every h_l, v_l and the depth weights (``Internals``).
            depth_impl: "sequential" (the literal equations) or "two_phase" (paper Alg. 1); "fused"
                is two_phase on the Triton kernel of kernels.py (CUDA, under no_grad, no internals),
                else two_phase. None picks the fastest exact path (kernels.default_depth_impl).
                "fla", "flash_attn_res", "liger", "fast_attnres": a maintained library's kernel
                (field_kernels.py; refused with FieldKernelError where it cannot run).
            mixer: replaces the weighted sum at every site; runs on the sequential path.
            shared_keys: on the sequential path, normalise each source's key once instead of at
                every site (the two-phase identity: weights equal the literal ones up to rounding,
                faster for many sources).
        """
        self._check(tokens, depth_impl, mixer, shared_keys)
        v0 = self.embed(tokens)  # [B, T, d] = v_0
        record = Recorder(SourceRule.of(self.config), v0) if return_internals else None
        if depth_impl is None:  # DESIGN.md §3: the fastest exact path here (benchmarks/README.md)
            depth_impl = kernels.default_depth_impl(v0, recording=record is not None)
        h_out = self._run(v0, depth_impl, mixer, shared_keys, record)
        logits = self.readout(h_out)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return ModelOutput(logits, loss, self._internals(record) if record else None)

    def _internals(self, record: Recorder) -> Internals:
        weights = record.depth_weights if self.config.residual != "prenorm" else None
        return Internals(
            record.embedding, record.layer_inputs, record.sublayer_outputs, weights, record.depth_sources
        )

    def _check(self, tokens: Tensor, depth_impl, mixer, shared_keys: bool) -> None:
        _, T = tokens.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds the context of {self.config.block_size}")
        if depth_impl not in DEPTH_IMPLS:
            raise ValueError(f"depth_impl must be one of {', '.join(DEPTH_IMPLS[1:])}, got {depth_impl!r}")
        if (mixer is not None or shared_keys) and depth_impl not in (None, "sequential"):
            raise ValueError(
                f"a mixer and shared_keys run on the sequential path, not depth_impl={depth_impl!r} "
                "(shared_keys=True gives the two-phase path's keys normalised once per source)"
            )

    def _run(self, v0: Tensor, depth_impl: str, mixer, shared_keys: bool, record) -> Tensor:
        """h_{L+1} by the chosen path: the fused kernel, Algorithm 1, or the equations as written."""
        if depth_impl in field_kernels.FIELD_IMPLS:  # the field's maintained kernels (field_kernels.py)
            return field_kernels.depth_forward(self, v0, depth_impl, _Sources(self.config, v0, False), record)
        ours = self.config.residual != "prenorm" and not _peer_conventions(self.config)
        if not ours or mixer is not None or shared_keys or depth_impl == "sequential":
            return self.sequential(v0, mixer, shared_keys=shared_keys, record=record)
        if depth_impl == "fused" and record is None and kernels.fused_applicable(v0):
            return kernels.fused_two_phase(v0, self.two_phase_plan())  # inference only
        return self._two_phase(v0, record)

    # ---- the equations as written: one site at a time ----------------------------------------
    def sequential(
        self,
        v0: Tensor,
        mixer: Mixer | None = None,
        *,
        shared_keys: bool = False,
        start: int = 1,
        outputs: Sequence[Tensor] = (),
        stop: int | None = None,
        record: Recorder | None = None,
    ) -> Tensor | list[Tensor]:
        """h_{L+1}, computed site by site as DESIGN.md §1 writes it.

        Args:
            v0: the embedding [B, T, d].
            mixer: replaces the weighted sum at each site (see ``Mixer``).
            shared_keys: each source's unit-RMS key is computed once, not at every site.
            start: the first site to run; ``outputs`` then holds v_1..v_{start-1} of an earlier run
                (depth is causal: a run that differs from site ``start`` on shares them).
            outputs: v_1..v_{start-1}.
            stop: run sites start..stop-1 only and return v_1..v_{stop-1} (a prefix to resume from).
            record: collects the internals.

        Returns:
            h_{L+1} [B, T, d], or the outputs v_1..v_{stop-1} with ``stop``.
        """
        L, state = self.config.n_sublayers, _Sources(self.config, v0, shared_keys)
        for l, v in enumerate(outputs[: start - 1], start=1):
            state.add(l, v)
        for l in range(start, L + 2):
            if l == stop:
                return state.outputs
            h, weights = self._mix(l, state, mixer)
            if record:
                record.site(l, h, weights)
            if l == L + 1:
                return h
            v = self.sublayer(l)(h)  # v_l = f_l(Norm_l(h_l))
            if record:
                record.output(v)
            state.add(l, v)
        raise AssertionError("unreachable")

    def _mix(self, l: int, state: _Sources, mixer: Mixer | None) -> tuple[Tensor, Tensor | None]:
        """h_l and its depth weights [B, T, K] (None for PreNorm) from site l's sources."""
        if self.config.residual == "prenorm":  # PreNorm: h_l = v_0 + sum_{i<l} v_i, weight 1 each
            return (state.stream if mixer is None else mixer(l, torch.stack(state.sources()), None)), None
        sources = torch.stack(state.sources())  # [K, B, T, d]: Full v_0..v_{l-1}; Block b_0..[, partial]
        weights = self._fixed_readout(l, sources)  # a peer's readout without a query, else None
        if weights is None and state.keys is None:  # alpha_{k->l} = softmax_k(w_l . RMSNorm_l(source_k))
            weights = self.site(l).weights(sources)  # [B, T, K]                                (Eq. 2-3)
        elif (
            weights is None
        ):  # the same softmax with keys v / rms(v) and the gain folded into w: (w * g_l) . v / rms(v)
            logits = torch.einsum("kbtd,d->btk", torch.stack(state.site_keys()), self.site(l).folded_query())
            weights = self.site(l).biased(logits.float()).softmax(-1).to(sources.dtype)
        if mixer is not None:
            return mixer(l, sources, weights), weights
        return weighted_sum(sources, weights), weights  # h_l = sum_k alpha_k source_k

    def _fixed_readout(self, l: int, stacked: Tensor) -> Tensor | None:
        """A peer's readout without a learned query (config.readout "none" / "sum").

        Its fixed weights [B, T, K] over the blocks (sources.py); None at every other site.
        """
        fixed = SourceRule.of(self.config).readout_coefficients()
        if l <= self.config.n_sublayers or fixed is None:
            return None
        return torch.tensor(fixed, dtype=stacked.dtype, device=stacked.device).expand(*stacked.shape[1:3], -1)

    # ---- paper Algorithm 1: two phases per group of sites ------------------------------------
    def two_phase_plan(self) -> kernels.TwoPhasePlan:
        """What the fused two-phase forward of kernels.py needs of this model, as plain values."""
        return kernels.TwoPhasePlan(
            groups=self._groups(),
            queries=self.folded_queries(),
            sublayer=lambda l, h: self.sublayer(l)(h),
            eps=self.config.key_norm_eps,
            block=self.config.residual == "block",
            n_sources=self.config.n_blocks + 1,
        )

    def folded_queries(self) -> Tensor:
        """All L+1 folded queries w_l * g_l as one [L+1, d] fp32 tensor (row l-1 is site l)."""
        sites = [self.site(l) for l in range(1, self.config.n_sublayers + 2)]
        return (torch.stack([s.query for s in sites]) * torch.stack([s.norm.weight for s in sites])).float()

    def _groups(self) -> list[range]:
        """Sites batched together by the two-phase path: Block's blocks, Full's chunks, readout."""
        rule, L = SourceRule.of(self.config), self.config.n_sublayers
        if self.config.residual == "block":
            groups = [rule.block_members(n) for n in range(1, rule.N + 1)]
        else:
            size = max(1, math.isqrt(L))
            groups = [range(a, min(a + size, L + 1)) for a in range(1, L + 1, size)]
        return groups + [range(L + 1, L + 2)]

    def _two_phase(self, v0: Tensor, record: Recorder | None) -> Tensor:
        """Paper Algorithm 1.

        Phase 1 batches a group's queries against the completed sources (returning output, max and
        sum-exp); phase 2 merges the sources made inside the group by online softmax. Keys are
        normalised once per source: w . RMSNorm_l(v) = (w*g_l) . v/rms(v).
        """
        eps, block = self.config.key_norm_eps, self.config.residual == "block"  # the key norms' eps
        values, keys = [v0], [_unit_rms(v0, eps)]  # the completed sources and their keys
        for sites in self._groups():
            queries = torch.stack([self.site(l).folded_query() for l in sites])  # [G, d]
            phase1 = _phase1(torch.stack(values), torch.stack(keys), queries)
            inner: list[tuple[Tensor, Tensor]] = []  # (source, its key) made inside this group
            for j, l in enumerate(sites):
                h, weights = _merge(_Phase1(*(x[j] for x in phase1)), queries[j], inner)
                if record:
                    record.site(l, h, weights)
                if l == self.config.n_sublayers + 1:
                    return h
                v = self.sublayer(l)(h)
                if record:
                    record.output(v)
                inner = _grown(inner, v, eps, block)
            values, keys = values + [v for v, _ in inner], keys + [k for _, k in inner]
        raise AssertionError("unreachable")

    # ---- helpers -------------------------------------------------------------------------
    def num_params(self) -> int:
        """Parameters counted once (a tied head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())


class _Sources:
    """The depth sources a sequential forward has made so far (DESIGN.md §1).

    ``completed``: Full v_0..v_{l-1} (one per sublayer); Block b_0 = v_0 and the finished block sums.
    ``partial``: Block's sum of the current block's outputs so far (None at a block's first layer).
    ``stream``: PreNorm's running sum v_0 + v_1 + ... (what its h_l is).
    """

    def __init__(self, config: ModelConfig, v0: Tensor, shared_keys: bool):
        self.rule, self.eps = SourceRule.of(config), config.key_norm_eps
        self.completed, self.stream, self.outputs = [v0], v0, []
        self.partial = v0 if self.rule.first_block_has_embedding else None  # a peer's block 1 starts from v_0
        self.keys = [] if shared_keys and config.residual != "prenorm" else None  # unit-RMS, once each

    def sources(self) -> list[Tensor]:
        """Site l's sources, in the order of ``SourceRule.labels(l)``."""
        return self.completed + ([self.partial] if self.partial is not None else [])

    def site_keys(self) -> list[Tensor]:
        """v / rms(v) of each source: cached for completed ones, fresh for the partial sum."""
        self.keys += [_unit_rms(v, self.eps) for v in self.completed[len(self.keys) :]]
        return self.keys + ([_unit_rms(self.partial, self.eps)] if self.partial is not None else [])

    def add(self, l: int, v: Tensor) -> None:
        """Takes in v_l: the stream grows, the block's partial sum grows, a finished block completes."""
        self.outputs.append(v)
        self.stream = self.stream + v
        self.partial = v if self.partial is None else self.partial + v  # b_n accumulates its sublayers
        if self.rule.ends_block(l):  # Full: every sublayer; Block: every S-th, and the last at L
            self.completed, self.partial = self.completed + [self.partial], None


class _Phase1(NamedTuple):
    """Phase 1 of Algorithm 1 for one site: the softmax over the completed sources."""

    out: Tensor  # [B, T, d] weighted sum
    m: Tensor  # [B, T, 1] max logit
    s: Tensor  # [B, T, 1] sum of exp(logit - m)
    p: Tensor  # [B, T, K] exp(logit - m)


def _phase1(values: Tensor, keys: Tensor, queries: Tensor) -> _Phase1:
    """Every query of a group [G, d] against the completed sources [K, B, T, d] at once."""
    logits = torch.einsum("kbtd,gd->gbtk", keys, queries).float()
    m = logits.amax(-1, keepdim=True)  # [G, B, T, 1]
    p = (logits - m).exp()
    s = p.sum(-1, keepdim=True)
    return _Phase1(torch.einsum("gbtk,kbtd->gbtd", (p / s).to(values.dtype), values), m, s, p)


def _grown(inner: list[tuple[Tensor, Tensor]], v: Tensor, eps: float, block: bool):
    """The group's own sources after v_l: Block's partial sum grows, Full gains v_l (with keys)."""
    if block and inner:
        v = inner[0][0] + v
        inner = []
    return inner + [(v, _unit_rms(v, eps))]


def _merge(phase1: _Phase1, query: Tensor, inner: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Phase 2: fold the group-internal (source, key) pairs into phase 1's softmax (online softmax)."""
    out, m, s, p = phase1
    if not inner:
        return out, (p / s).to(out.dtype)
    values, keys = torch.stack([v for v, _ in inner]), torch.stack([k for _, k in inner])  # [J, B, T, d]
    logits = torch.einsum("jbtd,d->btj", keys, query).float()
    m_new = torch.maximum(m, logits.amax(-1, keepdim=True))
    old = s * (m - m_new).exp()  # phase-1 mass, rescaled to the new max
    e = (logits - m_new).exp()
    total = old + e.sum(-1, keepdim=True)
    h = out * (old / total).to(out.dtype) + torch.einsum("btj,jbtd->btd", (e / total).to(out.dtype), values)
    weights = torch.cat([p * (old / s) / total, e / total], dim=-1)
    return h, weights.to(out.dtype)


def _peer_conventions(config: ModelConfig) -> bool:
    """Whether the config has a peer's convention: a fixed readout, block 1's embedding, a recency bias.

    The two-phase and fused paths run ours only.
    """
    return config.readout != "attnres" or config.first_block_has_embedding or config.depth_recency_bias


def _unit_rms(x: Tensor, eps: float) -> Tensor:
    """RMSNorm without its gain: x / rms(x). Shared by every site, so computed once per source."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def empty_model(config: ModelConfig, tokenizer=None) -> Model:
    """A Model on the meta device, no initialisation run.

    Its shapes, for loading weights into (``load_state_dict(..., assign=True)``) or for counting
    parameters.
    """
    with torch.device("meta"), SkipInit():
        return Model(config, tokenizer)
