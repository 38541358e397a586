"""Invariants of PreNorm, Full and Block AttnRes (DESIGN.md §1, §3), checked on tiny random models.

Each test recomputes what the model should have done with a few lines written here, from the
recorded internals and the state_dict, without calling the model's own helpers. n_layer = 4,
so L = 8 sublayers; the block sizes cover S = 1 (equals Full), S dividing L, S not dividing L
(S = 3: [1-3] [4-6] [7-8]; S = 5: [1-5] [6-8]) and S >= L (one block).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnres import Model, ModelConfig
from attnres.model import DepthAttention

N_LAYER, L = 4, 8
ATTNRES = [("full", None)] + [("block", S) for S in (1, 2, 3, 5, 8, 11)]
ALL_RULES = [("prenorm", None)] + ATTNRES
IMPLS = ["sequential", "two_phase"]
pytestmark = pytest.mark.usefixtures("one_thread")


def rule_id(rule) -> str:
    return rule[0] if rule[1] is None else f"block-S{rule[1]}"


attnres_rules = pytest.mark.parametrize("rule", ATTNRES, ids=rule_id)
all_rules = pytest.mark.parametrize("rule", ALL_RULES, ids=rule_id)
impls = pytest.mark.parametrize("impl", IMPLS)


def run(model: Model, tokens, impl=None, **kw):
    return model(tokens, return_internals=True, depth_impl=impl, **kw)


# ---- independent reference: the sources of each site, and alpha from the state_dict ------------
def ref_sources(config: ModelConfig, it, l: int) -> list[torch.Tensor]:
    """Sources of site l rebuilt from v_0 and v_1..v_L as DESIGN.md §1 defines them."""
    v = [it.embedding, *it.sublayer_outputs]  # v[i] = v_i
    if config.residual != "block":
        return v[: min(l, L + 1)]
    S = config.attnres_block_size
    n_done = math.ceil(L / S) if l == L + 1 else (l - 1) // S  # completed blocks
    blocks = [sum(v[(n - 1) * S + 1 : min(n * S, L) + 1]) for n in range(1, n_done + 1)]
    rest = v[n_done * S + 1 : l] if l <= L else []  # outputs of the current block so far
    return [v[0], *blocks] + ([sum(rest)] if rest else [])


def site_prefix(l: int) -> str:
    return "out_res" if l == L + 1 else f"blocks.{(l - 1) // 2}.{'attn_res' if l % 2 else 'mlp_res'}"


def ref_alpha(sources: list[torch.Tensor], w: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
    """alpha [B, T, K] = softmax_k(w . (v_k / sqrt(mean(v_k^2) + eps) * g)): no temperature."""
    V = torch.stack(sources)  # [K, B, T, d]
    keys = V / torch.sqrt(V.pow(2).mean(-1, keepdim=True) + eps) * g
    return torch.softmax(keys @ w, dim=0).permute(1, 2, 0)


def weighted_sum(alpha: torch.Tensor, sources: list[torch.Tensor]) -> torch.Tensor:
    return sum(alpha[..., k : k + 1] * s for k, s in enumerate(sources))


def perturb_sublayer(model: Model, j: int, seed: int = 0) -> None:
    """Changes only v_j: the output projection of sublayer j."""
    block = model.blocks[(j - 1) // 2]
    proj = (block.attn if j % 2 else block.mlp).c_proj.weight
    with torch.no_grad():
        proj.add_(0.5 * torch.randn(proj.shape, generator=torch.Generator().manual_seed(seed)))


# ---- 1, 2: zero init is a uniform average; alpha is a distribution ------------------------------
@attnres_rules
@impls
def test_zero_init_queries_average_uniformly(make_model, make_tokens, rule, impl):
    model = make_model(*rule, randomize_depth=False)
    it = run(model, make_tokens(), impl).internals
    for l in range(1, L + 2):
        sources, alpha = ref_sources(model.config, it, l), it.depth_weights[l - 1]
        torch.testing.assert_close(alpha, torch.full_like(alpha, 1 / len(sources)), atol=1e-7, rtol=0)
        torch.testing.assert_close(it.layer_inputs[l - 1], torch.stack(sources).mean(0), atol=1e-7, rtol=1e-6)


@attnres_rules
@impls
def test_alpha_is_nonnegative_and_rows_sum_to_one(make_model, make_tokens, rule, impl):
    it = run(make_model(*rule), make_tokens(B=3, T=7), impl).internals
    far_from_uniform = 0.0
    for alpha in it.depth_weights:
        assert (alpha >= 0).all()
        torch.testing.assert_close(alpha.sum(-1), torch.ones(alpha.shape[:2]), atol=1e-6, rtol=0)
        far_from_uniform = max(far_from_uniform, (alpha - 1 / alpha.shape[-1]).abs().max().item())
    assert far_from_uniform > 0.05  # the random queries really are in use


# ---- 3: depth causality -------------------------------------------------------------------------
@all_rules
@impls
def test_depth_causality_later_outputs_never_reach_earlier_inputs(make_model, make_tokens, rule, impl):
    tokens = make_tokens()
    for j in range(1, L + 1):
        model = make_model(*rule)
        before = run(model, tokens, impl).internals
        perturb_sublayer(model, j, seed=j)
        after = run(model, tokens, impl).internals
        for l in range(1, j + 1):  # h_1..h_j cannot see v_j
            assert torch.equal(before.layer_inputs[l - 1], after.layer_inputs[l - 1]), (j, l)
        assert not torch.allclose(before.layer_inputs[j], after.layer_inputs[j], atol=1e-6), j


@all_rules
def test_mixer_receives_exactly_the_design_sources(make_model, make_tokens, rule):
    """The mixer hook sees v_0..v_{l-1} (Full, PreNorm) or b_0..b_{n-1}[, partial] (Block),
    where each b_n is the plain sum of its sublayers' outputs; mixing them back as the rule
    says reproduces the model."""
    model, tokens = make_model(*rule), make_tokens()
    seen = {}

    def mixer(l, sources, weights):
        seen[l] = sources
        if weights is None:
            return sources.sum(0)
        return torch.einsum("btk,kbtd->btd", weights, sources)

    plain = run(model, tokens)
    mixed = run(model, tokens, mixer=mixer)
    for l in range(1, L + 2):
        want = torch.stack(ref_sources(model.config, mixed.internals, l))
        torch.testing.assert_close(seen[l], want, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(mixed.logits, plain.logits, atol=1e-6, rtol=1e-6)


# ---- 4: per-token independence; causal over positions ------------------------------------------
@attnres_rules
def test_depth_attention_does_not_mix_tokens(make_model, make_tokens, rule):
    model, tokens = make_model(*rule), make_tokens(T=6)
    site = model.blocks[1].attn_res
    sources = torch.randn(4, 2, 6, 32, generator=torch.Generator().manual_seed(3))
    alpha = site.weights(sources)
    changed = sources.clone()
    changed[:, :, 2] = torch.randn(4, 2, 32)
    alpha2 = site.weights(changed)
    assert torch.equal(alpha[:, [0, 1, 3, 4, 5]], alpha2[:, [0, 1, 3, 4, 5]])
    assert not torch.allclose(alpha[:, 2], alpha2[:, 2])

    def one_token_at_a_time(l, src, weights):  # each token mixed from its own sources only
        cols = [
            torch.einsum("bk,kbd->bd", model.site(l).weights(src[:, :, t : t + 1])[:, 0], src[:, :, t])
            for t in range(src.shape[2])
        ]
        return torch.stack(cols, dim=1)

    torch.testing.assert_close(
        model(tokens, mixer=one_token_at_a_time).logits, model(tokens).logits, atol=1e-6, rtol=1e-6
    )


@all_rules
@impls
def test_language_model_is_causal_over_positions(make_model, make_tokens, rule, impl):
    model, tokens = make_model(*rule), make_tokens(T=10)
    changed = tokens.clone()
    changed[:, 6] = (changed[:, 6] + 1) % model.config.vocab_size
    a, b = model(tokens, depth_impl=impl).logits, model(changed, depth_impl=impl).logits
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-6, rtol=0)
    assert (a[:, 6:] - b[:, 6:]).abs().amax(-1).min() > 1e-6  # every later position moved


# ---- 5, 6: first input is the embedding; Block S=1 is Full -------------------------------------
@all_rules
@impls
def test_first_sublayer_input_is_exactly_the_embedding(make_model, make_tokens, rule, impl):
    model, tokens = make_model(*rule), make_tokens()
    it = run(model, tokens, impl).internals
    T = tokens.shape[1]
    assert torch.equal(it.embedding, model.wte.weight[tokens] + model.wpe.weight[:T])
    assert torch.equal(it.layer_inputs[0], it.embedding)
    if it.depth_weights is not None:
        assert torch.equal(it.depth_weights[0], torch.ones(*tokens.shape, 1))


@pytest.mark.parametrize("impl_full", IMPLS)
@impls
def test_block_with_S1_equals_full(make_model, make_tokens, impl_full, impl):
    full, tokens = make_model("full"), make_tokens()
    block = make_model("block", 1, randomize_depth=False)
    block.load_state_dict(full.state_dict())
    a, b = run(full, tokens, impl_full), run(block, tokens, impl)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-6, rtol=1e-6)
    for name in ("layer_inputs", "sublayer_outputs", "depth_weights"):
        torch.testing.assert_close(
            getattr(b.internals, name), getattr(a.internals, name), atol=1e-6, rtol=1e-6
        )
    assert [len(x) for x in b.internals.depth_sources] == [len(x) for x in a.internals.depth_sources]


# ---- 7: block bookkeeping -------------------------------------------------------------------------
@pytest.mark.parametrize("S", [1, 2, 3, 4, 5, 8, 11])
@impls
def test_block_bookkeeping(make_model, make_tokens, S, impl):
    model = make_model("block", S)
    it = run(model, make_tokens(), impl).internals
    N = math.ceil(L / S)
    for l, labels in enumerate(it.depth_sources, start=1):
        n, first = (l - 1) // S + 1, (l - 1) % S == 0
        K = N + 1 if l == L + 1 else (n if first else n + 1)
        assert len(labels) == K <= N + 1 and labels.count("emb") == 1 and labels[0] == "emb"
        assert it.depth_weights[l - 1].shape[-1] == K
        h = weighted_sum(it.depth_weights[l - 1], ref_sources(model.config, it, l))
        torch.testing.assert_close(it.layer_inputs[l - 1], h, atol=1e-6, rtol=1e-5)
    blocks: dict[int, list[int]] = {}  # block of layer l = (number of completed blocks it sees) + 1
    for l, labels in enumerate(it.depth_sources[:L], start=1):
        blocks.setdefault(sum(x.startswith("B") for x in labels) + 1, []).append(l)
    assert list(blocks.values()) == [list(range(a, min(a + S, L + 1))) for a in range(1, L + 1, S)]
    assert it.depth_sources[L] == ("emb",) + tuple(f"B{n}" for n in range(1, N + 1))


def test_block_partition_when_S_does_not_divide_L(make_model, make_tokens):
    it = run(make_model("block", 3), make_tokens()).internals
    firsts = [l for l, labels in enumerate(it.depth_sources[:L], start=1) if "partial" not in labels]
    assert firsts == [1, 4, 7]  # [1-3] [4-6] [7-8]
    assert it.depth_sources[L] == ("emb", "B1", "B2", "B3")  # the short last block counts as done


# ---- 8, 9: keys are RMSNorm(values), values raw, no temperature; scale invariance ---------------
@attnres_rules
@impls
def test_alpha_matches_an_independent_formula(make_model, make_tokens, rule, impl):
    model = make_model(*rule)
    state, eps = model.state_dict(), model.config.norm_eps
    it = run(model, make_tokens(), impl).internals
    for l in range(1, L + 2):
        sources = ref_sources(model.config, it, l)
        w, g = state[f"{site_prefix(l)}.query"], state[f"{site_prefix(l)}.norm.weight"]
        alpha = ref_alpha(sources, w, g, eps)
        torch.testing.assert_close(it.depth_weights[l - 1], alpha, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(it.layer_inputs[l - 1], weighted_sum(alpha, sources), atol=1e-6, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(c=st.floats(0.1, 1000.0), k=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_scaling_one_source_leaves_alpha_unchanged(c, k, seed):
    gen = torch.Generator().manual_seed(seed)
    site = DepthAttention(ModelConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, d_model=16))
    with torch.no_grad():
        site.query.copy_(torch.randn(16, generator=gen))
        site.norm.weight.copy_(0.5 + torch.rand(16, generator=gen))
    sources = 3 * torch.randn(4, 2, 5, 16, generator=gen)
    scaled = sources.clone()
    scaled[k] *= c
    torch.testing.assert_close(site.weights(scaled), site.weights(sources), atol=2e-5, rtol=0)


# ---- 10: two-phase == sequential ------------------------------------------------------------------
@attnres_rules
def test_two_phase_equals_sequential(make_model, make_tokens, rule):
    model, tokens = make_model(*rule), make_tokens(B=2, T=12)
    a, b = run(model, tokens, "sequential"), run(model, tokens, "two_phase")
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.internals.embedding, a.internals.embedding, atol=0, rtol=0)
    for name in ("layer_inputs", "sublayer_outputs", "depth_weights"):
        torch.testing.assert_close(
            getattr(b.internals, name), getattr(a.internals, name), atol=1e-5, rtol=1e-5
        )
    assert b.internals.depth_sources == a.internals.depth_sources


@attnres_rules
def test_mixer_with_shared_keys_equals_the_literal_mixer_path(make_model, make_tokens, rule):
    """A mixer run with shared_keys normalises each source once; the weights it hands the
    mixer and the logits equal the literal path's to rounding, with the same sources."""
    model, tokens = make_model(*rule), make_tokens(B=2, T=12)
    seen = {"literal": {}, "shared": {}}

    def recorder(name):
        def mixer(l, sources, weights):
            seen[name][l] = (sources, weights)
            return torch.einsum("btk,kbtd->btd", weights, sources)

        return mixer

    literal = model(tokens, mixer=recorder("literal")).logits
    shared = model(tokens, mixer=recorder("shared"), shared_keys=True).logits
    torch.testing.assert_close(shared, literal, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(literal, model(tokens, depth_impl="sequential").logits, atol=0, rtol=0)
    assert seen["literal"].keys() == seen["shared"].keys() == set(range(1, L + 2))
    for l, (sources, weights) in seen["literal"].items():
        torch.testing.assert_close(seen["shared"][l][0], sources, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen["shared"][l][1], weights, atol=1e-6, rtol=1e-5)


# ---- 11: PreNorm inside each sublayer; readout = final norm then head ---------------------------
@all_rules
@impls
def test_prenorm_inside_each_sublayer_and_readout(make_model, make_tokens, rule, impl):
    model = make_model(*rule)
    out = run(model, make_tokens(), impl)
    it, eps = out.internals, model.config.norm_eps
    for l in range(1, L + 1):
        block, h = model.blocks[(l - 1) // 2], it.layer_inputs[l - 1]
        v = block.attn(block.attn_norm(h)) if l % 2 else block.mlp(block.mlp_norm(h))
        torch.testing.assert_close(it.sublayer_outputs[l - 1], v, atol=1e-6, rtol=1e-5)
    h = it.layer_inputs[L]
    normed = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps) * model.final_norm.weight
    torch.testing.assert_close(out.logits, normed @ model.lm_head.weight.T, atol=1e-6, rtol=1e-5)


# ---- 12, 13: parameter overhead; one weight per (site, source, token) ---------------------------
@pytest.mark.parametrize("residual", ["full", "block"])
@pytest.mark.parametrize("n_layer,d_model", [(1, 16), (3, 32), (4, 24)])
@pytest.mark.parametrize("tie", [True, False])
def test_parameter_overhead_is_4d_per_block_plus_2d(residual, n_layer, d_model, tie):
    def build(res):
        return Model(
            ModelConfig(
                vocab_size=40,
                block_size=16,
                n_layer=n_layer,
                n_head=2,
                d_model=d_model,
                residual=res,
                attnres_block_size=2,
                tie_embeddings=tie,
            )
        )

    attnres, prenorm = build(residual), build("prenorm")
    assert attnres.num_params() - prenorm.num_params() == 4 * d_model * n_layer + 2 * d_model
    extra = dict(attnres.named_parameters()).keys() - dict(prenorm.named_parameters()).keys()
    sites = [f"blocks.{i}.{kind}_res" for i in range(n_layer) for kind in ("attn", "mlp")] + ["out_res"]
    assert extra == {f"{site}.{name}" for site in sites for name in ("query", "norm.weight")}
    assert all(dict(attnres.named_parameters())[name].shape == (d_model,) for name in extra)


@all_rules
def test_one_weight_per_site_source_and_token(make_model, make_tokens, rule):
    it = run(make_model(*rule), make_tokens(B=3, T=5)).internals
    assert len(it.layer_inputs) == L + 1 and len(it.sublayer_outputs) == L and len(it.depth_sources) == L + 1
    if rule[0] == "prenorm":
        assert it.depth_weights is None
        return
    assert len(it.depth_weights) == L + 1
    for alpha, labels in zip(it.depth_weights, it.depth_sources, strict=True):
        assert alpha.shape == (3, 5, len(labels))


# ---- 14, 15: a zero query learns; S >= L is not a plain residual -------------------------------
@attnres_rules
def test_gradient_of_zero_query_is_nonzero(make_model, make_tokens, rule):
    model = make_model(*rule, randomize_depth=False)
    tokens = make_tokens(T=9)
    model(tokens[:, :-1], targets=tokens[:, 1:]).loss.backward()
    for l in range(1, L + 2):
        grad = model.site(l).query.grad
        if l == 1:  # a single source: the weight is exactly 1 whatever the query
            assert grad is None or torch.count_nonzero(grad) == 0
        else:
            assert grad.abs().max() > 1e-9, l


def test_gradient_of_zero_query_vanishes_only_for_identical_sources():
    site = DepthAttention(ModelConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, d_model=16))
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 16, generator=gen)
    for sources, nonzero in [
        (torch.randn(3, 2, 3, 16, generator=gen), True),
        (torch.randn(1, 2, 3, 16, generator=gen).expand(3, -1, -1, -1), False),
    ]:
        site.query.grad = None
        h = torch.einsum("btk,kbtd->btd", site.weights(sources), sources)
        (h * target).sum().backward()
        largest = site.query.grad.abs().max().item()
        assert largest > 1e-2 if nonzero else largest < 1e-5  # zero up to float rounding


@pytest.mark.parametrize("S", [8, 11])
def test_block_with_S_at_least_L_is_not_a_plain_residual(make_model, make_tokens, S):
    block, tokens = make_model("block", S, randomize_depth=False), make_tokens()
    prenorm = make_model("prenorm")
    prenorm.load_state_dict(block.state_dict(), strict=False)  # same weights, minus depth params
    a, b = run(block, tokens).internals, run(prenorm, tokens).internals
    assert a.depth_sources == [("emb",)] + [("emb", "partial")] * (L - 1) + [("emb", "B1")]
    for l in range(2, L + 2):  # zero queries: h_l = (v_0 + partial) / 2, not v_0 + partial
        partial = sum(a.sublayer_outputs[: l - 1])
        torch.testing.assert_close(a.layer_inputs[l - 1], (a.embedding + partial) / 2, atol=1e-7, rtol=1e-5)
    assert not torch.allclose(a.layer_inputs[1], b.layer_inputs[1], atol=1e-4)
    assert not torch.allclose(run(block, tokens).logits, run(prenorm, tokens).logits, atol=1e-4)


# ---- the baseline, the labels, and the public contract ------------------------------------------
def test_prenorm_stream_is_exactly_embedding_plus_outputs(make_model, make_tokens):
    it = run(make_model("prenorm"), make_tokens()).internals
    stream = it.embedding
    for l in range(1, L + 2):
        assert torch.equal(it.layer_inputs[l - 1], stream), l
        if l <= L:
            stream = stream + it.sublayer_outputs[l - 1]


@all_rules
@impls
def test_capturing_internals_does_not_change_logits(make_model, make_tokens, rule, impl):
    model, tokens = make_model(*rule), make_tokens()
    out = run(model, tokens, impl)
    assert torch.equal(model(tokens, depth_impl=impl).logits, out.logits)
    tensors = [out.internals.embedding, *out.internals.layer_inputs, *out.internals.sublayer_outputs]
    assert not any(t.requires_grad for t in tensors + (out.internals.depth_weights or []))


def test_depth_source_labels_follow_design(make_model, make_tokens):
    def labels(*rule, n_layer=2):
        return run(make_model(*rule, n_layer=n_layer), make_tokens()).internals.depth_sources

    full = [
        ("emb",),
        ("emb", "L1"),
        ("emb", "L1", "L2"),
        ("emb", "L1", "L2", "L3"),
        ("emb", "L1", "L2", "L3", "L4"),
    ]
    assert labels("full") == full and labels("prenorm") == full
    assert labels("block", 2) == [
        ("emb",),
        ("emb", "partial"),
        ("emb", "B1"),
        ("emb", "B1", "partial"),
        ("emb", "B1", "B2"),
    ]
    assert labels("block", 3, n_layer=4) == [
        ("emb",),
        ("emb", "partial"),
        ("emb", "partial"),
        ("emb", "B1"),
        ("emb", "B1", "partial"),
        ("emb", "B1", "partial"),
        ("emb", "B1", "B2"),
        ("emb", "B1", "B2", "partial"),
        ("emb", "B1", "B2", "B3"),
    ]


@all_rules
def test_fresh_model_is_fp32_on_cpu_without_dropout(rule):
    model = Model(
        ModelConfig(
            vocab_size=40,
            block_size=16,
            n_layer=2,
            n_head=2,
            d_model=16,
            residual=rule[0],
            attnres_block_size=rule[1],
        )
    )
    assert model.config.dropout == 0.0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    for p in [*model.parameters(), *model.buffers()]:
        assert p.dtype == torch.float32 and p.device.type == "cpu"
    for name, p in model.named_parameters():
        if name.endswith("_res.query"):
            assert torch.count_nonzero(p) == 0, name  # zero-initialised: uniform at init


@all_rules
def test_loss_is_mean_cross_entropy_ignoring_minus_one(make_model, make_tokens, rule):
    model, tokens = make_model(*rule), make_tokens(B=2, T=9)
    targets = tokens[:, 1:].clone()
    targets[0, 2] = targets[1, 5] = targets[1, 7] = -1
    out = model(tokens[:, :-1], targets=targets)
    logp = out.logits.log_softmax(-1)
    keep = targets != -1
    nll = -logp[keep].gather(-1, targets[keep][:, None]).squeeze(-1)
    assert keep.sum() == 13
    torch.testing.assert_close(out.loss, nll.mean(), atol=1e-6, rtol=1e-6)
    assert model(tokens[:, :-1]).loss is None
