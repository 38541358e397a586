"""Gate attribution: completeness, both ends of the path against the model run by hand, causality,
and zero credit for routes whose value does not move."""

import numpy as np
import pytest
import torch

from probes import gate_attribution, make_batch, trace

RULES = [("prenorm", None), ("full", None), ("block", 2)]


@torch.no_grad()
def mean_read_logprob(model, text: str, position: int, target: int) -> float:
    """f(0) from its definition, by hand: each site mixes, with the routing weights of the real
    sources, every source's mean over positions 0..position of the unmodified model's run."""
    tokens = make_batch(model, text).tokens
    clean = trace(model, text)
    T, L = tokens.shape[1], model.config.n_sublayers
    v = [model.wte(tokens) + model.wpe(torch.arange(T))]  # v_0, then each v_l of this run
    for l in range(1, L + 2):
        means = clean.sources(l)[:, :, : position + 1].mean(2, keepdim=True)  # [K, 1, 1, d]
        labels = model.depth_source_labels(l)
        if model.config.residual == "prenorm":
            h = means.sum(0).expand(1, T, -1)
        else:
            real = _sources_by_label(model, v, labels, l)  # the keys come from the real sources
            alpha = model.site(l).weights(real)  # [1, T, K]
            h = torch.einsum("btk,kbd->btd", alpha, means[:, :, 0])
        if l == L + 1:
            return model.readout(h)[0, position].log_softmax(-1)[target].item()
        v.append(model.sublayer(l)(h))
    raise AssertionError("unreachable")


def _sources_by_label(model, v, labels, l):
    size = model.config.attnres_block_size or 1
    out = []
    for label in labels:
        if label == "emb":
            out.append(v[0])
        elif label.startswith("L"):
            out.append(v[int(label[1:])])
        elif label == "partial":
            first = (l - 2) // size * size + 1  # first layer of the block holding v_{l-1}
            out.append(sum(v[first:l]))
        else:  # "B<n>": block n = layers (n-1)*size+1 .. n*size
            n = int(label[1:])
            out.append(sum(v[(n - 1) * size + 1 : min(n * size, l - 1) + 1]))
    return torch.stack(out)


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_completeness_and_both_ends_of_the_path(make_model, rule, block):
    model = make_model(rule, block, n_layer=2)
    result = gate_attribution(model, ["abcde", "hg"], n_steps=64)
    total = np.nansum(result.attribution, axis=(1, 2))
    np.testing.assert_allclose(total, result.logprob_model - result.logprob_baseline, atol=2e-3)
    np.testing.assert_allclose(
        result.convergence_delta, total - (result.logprob_model - result.logprob_baseline), atol=1e-4
    )
    logits = model(make_batch(model, ["abcde", "hg"]).tokens).logits
    logprobs = logits[[0, 1], [4, 1]].log_softmax(-1)
    assert result.positions.tolist() == [4, 1]
    np.testing.assert_array_equal(result.targets, logprobs.argmax(-1).numpy())  # default: top-1
    np.testing.assert_allclose(result.logprob_model, logprobs.max(-1).values.detach().numpy(), atol=1e-5)
    for b, text in enumerate(["abcde", "hg"]):
        by_hand = mean_read_logprob(model, text, int(result.positions[b]), int(result.targets[b]))
        assert result.logprob_baseline[b] == pytest.approx(by_hand, abs=1e-5)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_later_tokens_do_not_change_an_earlier_positions_attribution(make_model, rule, block):
    model = make_model(rule, block, n_layer=2, seed=3)
    a = gate_attribution(model, "abcdefg", positions=2, targets=5, n_steps=16)
    b = gate_attribution(model, "abchhaa", positions=2, targets=5, n_steps=16)
    np.testing.assert_allclose(a.attribution, b.attribution, atol=1e-5)
    assert a.logprob_baseline[0] == pytest.approx(b.logprob_baseline[0], abs=1e-6)


def test_only_the_route_whose_value_moves_gets_credit(make_bias_toy):
    """Bias toy: every sublayer output is the same vector e_l at every token, so its routes cannot
    move (value = mean). The readout's query points away from every e_l, so it reads the embedding
    (orthogonal to them) alone: that route takes all the credit."""
    model = make_bias_toy("full")
    with torch.no_grad():
        model.site(7).query.zero_()
        model.site(7).query[1:7] = -20.0  # logit of v_l = e_l: -20 * sqrt(d); of v_0: 0
    result = gate_attribution(model, "abcab", targets=2, n_steps=64)
    emb = model.depth_source_labels(7).index("emb")
    readout = result.attribution[0, 6]
    assert abs(readout[emb]) > 1e-2
    rest = np.delete(np.nan_to_num(result.attribution[0]).ravel(), 6 * result.attribution.shape[2] + emb)
    assert np.abs(rest).max() < 1e-5
    assert readout[emb] == pytest.approx(result.logprob_model[0] - result.logprob_baseline[0], abs=1e-3)
    by_hand = mean_read_logprob(model, "abcab", 4, 2)
    assert result.logprob_baseline[0] == pytest.approx(by_hand, abs=1e-5)


def test_shipped_model_converges_in_32_steps():
    """On a trained model the path is smooth: 32 Gauss-Legendre steps meet completeness to 1e-2
    (with gates that scaled sources to zero, the error exceeded f(1) - f(0) itself)."""
    from pathlib import Path

    from attnres import load_model

    root = Path(__file__).resolve().parents[2] / "sample_models"
    model = load_model(root / "shakespeare-block")
    result = gate_attribution(model, "ROMEO:\nBut soft, what light through yonder window breaks?", n_steps=32)
    assert abs(result.convergence_delta[0]) < 1e-2
    assert abs(result.logprob_model[0] - result.logprob_baseline[0]) > 1e-2


def test_evaluation_chunks_follow_the_bounds_and_do_not_change_the_result(make_model):
    from attnres import ModelConfig
    from attnres.model import empty_model
    from probes.attribution import (
        BYTES_PER_SOURCE_VALUE,
        EVALUATION_BYTES,
        TOKENS_PER_EVALUATION,
        _rows_per_evaluation,
    )

    model = make_model("full", None, n_layer=2)
    counts = [len(model.depth_source_labels(l)) for l in range(1, 6)]
    assert _rows_per_evaluation(model, counts, torch.zeros(2, 8, dtype=torch.long)) == 2 * (
        TOKENS_PER_EVALUATION // 16
    )
    gpt2 = empty_model(ModelConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, d_model=768))
    big = [len(gpt2.depth_source_labels(l)) for l in range(1, 26)]
    assert sum(big) == 325  # PreNorm: site l reads v_0..v_{l-1}
    per_token = BYTES_PER_SOURCE_VALUE * 768 * 325
    plenty = 64 * EVALUATION_BYTES
    assert (
        _rows_per_evaluation(gpt2, big, torch.zeros(1, 100, dtype=torch.long), plenty)
        == EVALUATION_BYTES // per_token // 100
    )
    little = 4 * 3 * per_token * 100  # a quarter of it holds 3 rows of 100 tokens
    assert _rows_per_evaluation(gpt2, big, torch.zeros(1, 100, dtype=torch.long), little) == 3
    assert (
        _rows_per_evaluation(gpt2, big, torch.zeros(3, 1024, dtype=torch.long), plenty) == 3
    )  # never below B
    a = gate_attribution(model, ["abcde", "hg"], n_steps=8)
    b = gate_attribution(model, ["abcde", "hg"], n_steps=8, internal_batch_size=2)
    np.testing.assert_allclose(b.attribution, a.attribution, atol=1e-5, equal_nan=True)


@torch.no_grad()
def one_route_at_its_mean(model, text: str, site: int, k: int, position: int, target: int) -> float:
    """By hand: the model with source k of one site replaced by its mean over positions 0..position."""
    clean = trace(model, text)
    mean = clean.sources(site)[k, :, : position + 1].mean(1, keepdim=True)  # [1, 1, d]

    def mixer(l, sources, weights):
        if l == site:
            sources = sources.clone()
            sources[k] = mean.expand_as(sources[k])
        if weights is None:
            return sources.sum(0)
        return torch.einsum("btk,kbtd->btd", weights, sources)

    tokens = make_batch(model, text).tokens
    return model(tokens, mixer=mixer).logits[0, position].log_softmax(-1)[target].item()


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_route_ablation_replaces_one_source_by_its_mean(make_model, rule, block):
    from probes import route_ablation

    model = make_model(rule, block, n_layer=2, seed=5)
    site = 4
    result = route_ablation(model, ["abcdeh", "hg"], site)
    assert result.sources == model.depth_source_labels(site)
    assert result.effect.shape == (2, len(result.sources))
    for b, text in enumerate(["abcdeh", "hg"]):
        pos, tgt = int(result.positions[b]), int(result.targets[b])
        logits = model(make_batch(model, text).tokens).logits
        assert result.logprob_model[b] == pytest.approx(logits[0, pos].log_softmax(-1)[tgt].item(), abs=1e-5)
        for k in range(len(result.sources)):
            by_hand = one_route_at_its_mean(model, text, site, k, pos, tgt)
            assert result.logprob_ablated[b, k] == pytest.approx(by_hand, abs=1e-5)
    np.testing.assert_allclose(
        result.effect, result.logprob_model[:, None] - result.logprob_ablated, atol=1e-6
    )
    with pytest.raises(ValueError, match="site must be"):
        route_ablation(model, "abc", 0)


def test_route_ablation_agrees_with_attribution_where_only_one_route_moves(make_bias_toy):
    from probes import route_ablation

    model = make_bias_toy("full")
    with torch.no_grad():
        model.site(7).query.zero_()
        model.site(7).query[1:7] = -20.0
    ablation = route_ablation(model, "abcab", 7, targets=2)
    attribution = gate_attribution(model, "abcab", targets=2, n_steps=64)
    emb = model.depth_source_labels(7).index("emb")
    assert ablation.effect[0, emb] == pytest.approx(attribution.attribution[0, 6, emb], abs=1e-3)
    assert np.abs(np.delete(ablation.effect[0], emb)).max() < 1e-5


def whole_model_attribution(model, text: str, n_steps: int):
    """The attribution as first written: captum over a function that runs the whole model (every
    position, every site, the full output) with the gated mix, for the last token's top-1."""
    from captum.attr import IntegratedGradients

    tokens = make_batch(model, text).tokens
    clean = trace(model, text)
    L = model.config.n_sublayers
    means = torch.cat([clean.sources(l).mean(2)[:, 0] for l in range(1, L + 2)])  # [G, d]
    offsets = np.cumsum([0] + [len(model.depth_source_labels(l)) for l in range(1, L + 2)]).tolist()
    target = int(clean.logits[0, -1].argmax())

    def f(gates):
        def mixer(site, sources, weights):
            g = gates[:, offsets[site - 1] : offsets[site]]
            mu = means[offsets[site - 1] : offsets[site]]
            if weights is None:
                weights = torch.ones(sources.shape[1], sources.shape[2], len(mu))
            read = mu[:, None, None] + g.T[:, :, None, None] * (sources - mu[:, None, None])
            return torch.einsum("btk,kbtd->btd", weights, read)

        n = gates.shape[0]
        logits = model(tokens.expand(n, -1), mixer=mixer, shared_keys=True).logits
        return logits[:, -1].log_softmax(-1)[:, target]

    ones = torch.ones(1, offsets[-1])
    return IntegratedGradients(f).attribute(ones, torch.zeros_like(ones), n_steps=n_steps)


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_estimates_refine_and_equal_the_whole_model_integral(make_model, rule, block):
    from probes import attribution_estimates

    model = make_model(rule, block, n_layer=2, seed=7)
    seen = []
    estimates = list(
        attribution_estimates(
            model, "abcdeh", steps=(4, 8), tolerance=0.0, on_progress=lambda d, t: seen.append((d, t))
        )
    )
    assert [e.n_steps for e in estimates] == [4, 8]
    assert seen[0] == (0, 13) and seen[-1][0] < 13 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    for estimate in estimates:
        reference = whole_model_attribution(model, "abcdeh", estimate.n_steps)[0].detach().numpy()
        got = estimate.attribution[0][~np.isnan(estimate.attribution[0])]
        np.testing.assert_allclose(got, reference, atol=1e-5)
    # a tolerance the first estimate meets ends the refinement there
    loose = list(attribution_estimates(model, "abcdeh", steps=(4, 8), tolerance=np.inf))
    assert [e.n_steps for e in loose] == [4]


def test_an_exception_from_the_progress_callback_stops_the_integral(make_model):
    from probes import attribution_estimates

    class Stop(Exception):
        pass

    def cancel(done, total):
        if done > 0:
            raise Stop

    model = make_model("full", None, n_layer=2)
    with pytest.raises(Stop):
        next(attribution_estimates(model, "abcdeh", steps=(64,), internal_batch_size=1, on_progress=cancel))


def test_memory_refusal_follows_the_source_stacks():
    from attnres import ModelConfig
    from attnres.model import empty_model
    from probes.attribution import BYTES_PER_SOURCE_VALUE, memory_refusal, row_bytes

    gpt2 = empty_model(ModelConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, d_model=768))
    assert row_bytes(gpt2, 256) == BYTES_PER_SOURCE_VALUE * 768 * 325 * 256  # 325 sources over 25 sites
    assert memory_refusal(gpt2, 256, free_bytes=2 * row_bytes(gpt2, 256)) is None
    sentence = memory_refusal(gpt2, 256, free_bytes=row_bytes(gpt2, 256))
    assert sentence.startswith("integrated gradients over 256 tokens need about 0.7 GiB")
    assert "not run" in sentence
