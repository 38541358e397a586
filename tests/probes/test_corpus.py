"""Corpus sweep: streaming accumulators against two-pass numpy, the sweep against the per-prompt
probes (an independent computation of every per-token quantity), shard merges, sinks, cache, resume."""

import json

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

import probes
from probes.corpus import (
    CoMoments,
    CorpusError,
    Histogram,
    Moments,
    Sequences,
    SweepCache,
    SweepCancelled,
    SweepSettings,
    corpus_diff,
    corpus_sinks,
    corpus_sweep,
    load_sequences,
    prompt_vs_corpus,
)
from probes.corpus.measure import BatchMeasure
from probes.corpus.result import build_stats
from probes.corpus.state import SweepState

RNG = np.random.default_rng(0)


def _batches(x, sizes):
    start = 0
    for size in sizes:
        yield x[start : start + size]
        start += size


@pytest.mark.parametrize("masked", [False, True])
def test_moments_equal_two_pass_numpy_also_after_a_shard_merge(masked):
    x = 1000.0 + RNG.normal(size=(97, 3, 4)) * RNG.uniform(0.1, 5, size=(3, 4))
    w = RNG.uniform(size=x.shape) > 0.3 if masked else np.ones(x.shape, bool)
    one, shard_a, shard_b = Moments((3, 4)), Moments((3, 4)), Moments((3, 4))
    for part, wp in zip(_batches(x, [10, 1, 40, 46]), _batches(w, [10, 1, 40, 46]), strict=True):
        one.add(torch.tensor(part), torch.tensor(wp) if masked else None)
    for acc, rows in ((shard_a, slice(0, 30)), (shard_b, slice(30, None))):
        for part, wp in zip(_batches(x[rows], [7, 100]), _batches(w[rows], [7, 100]), strict=True):
            acc.add(torch.tensor(part), torch.tensor(wp) if masked else None)
    shard_a.merge(shard_b)
    xm = np.where(w, x, np.nan)
    mean, var0, var1 = np.nanmean(xm, 0), np.nanvar(xm, 0), np.nanvar(xm, 0, ddof=1)
    for acc in (one, shard_a):
        np.testing.assert_allclose(acc.mean.numpy(), mean, rtol=1e-12, atol=1e-6)
        np.testing.assert_allclose(acc.variance(), var0, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(acc.variance(ddof=1), var1, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(acc.n.numpy(), w.sum(0))


def test_comoments_equal_numpy_correlation_per_cell_and_pooled():
    x = RNG.uniform(size=(200, 2, 3))
    y = 3.0 + 0.5 * x + RNG.normal(size=x.shape) * np.array([0.01, 0.1, 1.0])
    acc, other = CoMoments((2, 3)), CoMoments((2, 3))
    acc.add_pair(torch.tensor(x[:50]), torch.tensor(y[:50]))
    other.add_pair(torch.tensor(x[50:]), torch.tensor(y[50:]))
    acc.merge(other)
    expected = np.array([[np.corrcoef(x[:, i, j], y[:, i, j])[0, 1] for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(acc.correlation(), expected, atol=1e-9)
    present = torch.tensor([[True, True, False], [True, True, True]])
    pooled = acc.pooled(1, present).correlation()
    for i in range(2):
        cols = present[i].numpy()
        want = np.corrcoef(x[:, i, cols].ravel(), y[:, i, cols].ravel())[0, 1]
        assert pooled[i] == pytest.approx(want, abs=1e-9)


def test_histogram_quantiles_within_one_bin_and_merge_adds_counts():
    x = RNG.beta(2, 5, size=(5000, 3))
    a, b = Histogram(3, 100), Histogram(3, 100)
    a.add(torch.tensor(x[:2000]))
    b.add(torch.tensor(x[2000:]))
    a.merge(b)
    whole = Histogram(3, 100)
    whole.add(torch.tensor(x))
    assert torch.equal(a.counts, whole.counts)
    levels = (0.1, 0.5, 0.9)
    np.testing.assert_allclose(a.quantiles(levels), np.quantile(x, levels, axis=0), atol=0.01)


def random_sequences(n=7, T=12, vocab=10, seed=0, ragged=False):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, T), generator=g)
    lengths = torch.randint(2, T + 1, (n,), generator=g) if ragged else None
    return Sequences.from_tokens(tokens, lengths)


def _per_sequence(values, mask):
    """Two-pass numpy: token mean/std, sequence means' mean/std and the t-interval half width."""
    values = values.astype(np.float64)
    tokens = values[mask]
    seq = np.stack([values[i][mask[i]].mean(0) for i in range(len(values))])
    n = len(seq)
    half = scipy_stats.t.ppf(0.975, n - 1) * seq.std(0, ddof=1) / np.sqrt(n)
    return tokens.mean(0), tokens.std(0), seq.mean(0), seq.std(0, ddof=1), half


def _assert_estimate(est, values, mask, atol=1e-6):
    for got, want in zip(
        (est.mean, est.token_std, est.seq_mean, est.seq_std, est.ci_half),
        _per_sequence(values, mask),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)


def _probe_inputs(seqs):
    return probes.Batch(seqs.tokens, torch.arange(seqs.tokens.shape[1])[None] < seqs.lengths[:, None], None)


@pytest.mark.parametrize(("rule", "block"), [("prenorm", None), ("full", None), ("block", 2)])
@pytest.mark.parametrize("ragged", [False, True])
def test_sweep_equals_two_pass_numpy_on_the_probes_per_token_values(make_model, rule, block, ragged):
    model = make_model(rule, block, seed=3)
    seqs = random_sequences(ragged=ragged)
    stats = corpus_sweep(model, seqs, SweepSettings(batch_size=3))
    batch = _probe_inputs(seqs)
    mask = batch.mask.numpy()
    dw, norms, lens = (
        probes.depth_weights(model, batch),
        probes.stream_norms(model, batch),
        probes.logit_lens(model, batch),
    )
    _assert_estimate(stats.alpha, dw.per_token, mask)
    _assert_estimate(stats.input_rms, norms.input_rms, mask)
    _assert_estimate(stats.update_ratio, norms.update_ratio, mask)
    _assert_estimate(stats.update_share, norms.update_share, mask)
    _assert_estimate(stats.block_output_rms, norms.carried_rms[..., 1::2], mask)
    _assert_estimate(stats.entropy, dw.entropy_per_token, mask)
    _assert_estimate(stats.lens_kl, lens.kl_to_final, mask, atol=1e-5)
    p = dw.per_token / np.nansum(dw.per_token, -1, keepdims=True)
    _assert_estimate(stats.max_weight, np.nan_to_num(p).max(-1), mask)
    assert stats.n_sequences == len(seqs) and stats.n_tokens == int(mask.sum())
    logprob = torch.log_softmax(model(seqs.tokens).logits.float(), -1).detach().numpy()
    has = mask[:, 1:] & mask[:, :-1]
    ce = -np.take_along_axis(logprob[:, :-1], seqs.tokens[:, 1:, None].numpy(), -1)[..., 0]
    assert stats.loss.mean[0] == pytest.approx(ce[has].mean(), abs=1e-5)
    by_pos = np.array([ce[has[:, t], t].mean() if has[:, t].any() else np.nan for t in range(has.shape[1])])
    np.testing.assert_allclose(stats.loss_by_position.mean, by_pos, atol=1e-5)


@pytest.mark.parametrize(("rule", "block"), [("prenorm", None), ("block", 2)])
def test_gradients_equal_the_gradient_probe_on_one_batch(make_model, rule, block):
    model = make_model(rule, block, seed=4)
    seqs = random_sequences(n=4, ragged=True)
    stats = corpus_sweep(model, seqs, SweepSettings(batch_size=4, gradients=True))
    batch = _probe_inputs(seqs)
    grads = probes.gradient_norms(model, batch)
    np.testing.assert_allclose(stats.block_grad_norm.mean, grads.block_param_grad_norm, rtol=1e-5)
    assert stats.block_grad_norm.unit == "batch" and stats.block_grad_norm.n.tolist() == [1] * len(
        grads.block_param_grad_norm
    )
    _assert_estimate(stats.stream_grad_norm, grads.stream_grad_norm, batch.mask.numpy())


def test_correlation_and_quantiles_match_numpy(make_model):
    model = make_model("full", None, seed=5)
    seqs = random_sequences(n=9)
    stats = corpus_sweep(model, seqs, SweepSettings(batch_size=4))
    tr = probes.trace(model, _probe_inputs(seqs))
    l = 5
    alpha = tr.weights(l).reshape(-1, l).numpy()
    rms = tr.sources(l).pow(2).mean(-1).sqrt().reshape(l, -1).T.numpy()
    want = [np.corrcoef(alpha[:, k], rms[:, k])[0, 1] for k in range(1, l)]  # emb: constant RMS per id
    np.testing.assert_allclose(stats.alpha_rms_corr[l - 1, 1:l], want, atol=1e-6)
    pooled = np.corrcoef(alpha.ravel(), rms.ravel())[0, 1]
    assert stats.alpha_rms_corr_site[l - 1] == pytest.approx(pooled, abs=1e-6)
    # within one bin (0.01) of where the empirical CDF crosses each level
    for q, level in enumerate(stats.quantile_levels):
        for k in range(l):
            v = stats.alpha_quantiles[q, l - 1, k]
            assert (alpha[:, k] <= v - 0.01).mean() <= level <= (alpha[:, k] <= v + 0.01).mean()


def test_two_shards_merged_equal_one_pass(make_model):
    model = make_model("block", 2, seed=1)
    seqs = random_sequences(n=10, ragged=True)
    measure = BatchMeasure(model, gradients=True)
    states = [SweepState(measure.layout, measure.present, seqs.tokens.shape[1]) for _ in range(3)]
    mask = torch.arange(seqs.tokens.shape[1])[None] < seqs.lengths[:, None]
    for target, rows in ((0, slice(0, 4)), (0, slice(4, 10)), (1, slice(0, 4)), (2, slice(4, 10))):
        states[target].add(measure(seqs.tokens[rows], mask[rows]), mask[rows])
    states[1].merge(states[2])
    meta = {"residual": "block", "corpus": "x", "corpus_digest": "d", "model_fingerprint": "f"}
    one, merged = (build_stats(s, measure.labels, meta) for s in states[:2])
    for name in ("alpha", "input_rms", "lens_kl", "stream_grad_norm", "loss_by_position", "block_grad_norm"):
        for field in ("mean", "token_std", "seq_mean", "seq_std", "ci_half"):
            np.testing.assert_allclose(
                getattr(getattr(merged, name), field), getattr(getattr(one, name), field), atol=1e-9
            )
    np.testing.assert_array_equal(merged.alpha_histogram, one.alpha_histogram)


@pytest.mark.parametrize("batch_size", [6, 4])
def test_identical_sequences_have_zero_spread_and_a_zero_width_interval(make_model, batch_size):
    model = make_model("full", None, seed=2)
    row = torch.randint(0, 10, (1, 12), generator=torch.Generator().manual_seed(4))
    stats = corpus_sweep(model, Sequences.from_tokens(row.repeat(6, 1)), SweepSettings(batch_size=batch_size))
    # one batch: exactly 0; batches of 4 and 2 rows: the float32 forward itself rounds differently
    bound = 0.0 if batch_size == 6 else 1e-6
    for est in (
        stats.alpha,
        stats.input_rms,
        stats.entropy,
        stats.lens_kl,
        stats.loss,
        stats.loss_by_position,
    ):
        present = ~np.isnan(est.seq_std)
        assert np.abs(est.seq_std[present]).max() <= bound and np.abs(est.ci_half[present]).max() <= bound
    assert np.nanmax(stats.alpha.token_std) > 1e-3  # the tokens within the sequence do differ


@pytest.mark.parametrize(("rule", "block", "site", "label"), [("full", None, 5, "L2"), ("block", 2, 6, "B1")])
def test_a_forced_source_is_a_sink_on_any_corpus(make_bias_toy, forcing, rule, block, site, label):
    toy = make_bias_toy(rule, block)
    forcing(toy, site, label)
    corpora = [random_sequences(n=5, seed=s, ragged=s == 1) for s in (0, 1)]
    corpora.append(Sequences.from_tokens(torch.full((3, 10), 2)))
    for seqs in corpora:
        sinks = corpus_sinks(corpus_sweep(toy, seqs, SweepSettings(batch_size=2)))
        found = list(zip(sinks.sites.tolist(), sinks.labels, strict=True))
        assert (site, label) in found
        i = found.index((site, label))
        assert sinks.mean[i] > 0.95 and sinks.seq_std[i] < 0.01 and sinks.q10[i] > 0.9
        assert sinks.n_sequences == len(seqs)
        assert all(s == site for s, _ in found)  # every other site of the toy reads uniformly


def test_prompt_vs_corpus_flags_a_prompt_routed_elsewhere(make_bias_toy):
    toy = make_bias_toy("full")
    h = toy.tokenizer.encode("h")[0]
    with torch.no_grad():  # site 5 reads the embedding when the token is "h"
        toy.site(5).query.copy_(20 * toy.wte.weight[h] / toy.wte.weight[h].norm())
    corpus = random_sequences(n=12, vocab=4)  # "abcd" only
    stats = corpus_sweep(toy, corpus, SweepSettings(batch_size=6))
    usual = prompt_vs_corpus(probes.depth_weights(toy, "abcdabcdabcd"), stats)
    odd = prompt_vs_corpus(probes.depth_weights(toy, "hhhhhhhhhhhh"), stats)
    assert usual.n_sequences == 12 and odd.prompt_tokens == 12
    assert not usual.unusual.any()
    assert odd.unusual[4, 0] and odd.z[4, 0] > 3 and odd.prompt_mean[4, 0] > stats.alpha.seq_mean[4, 0] + 0.3
    want = (odd.prompt_mean - stats.alpha.seq_mean) / np.maximum(stats.alpha.seq_std, 0.01)
    np.testing.assert_allclose(odd.z, want, atol=1e-9)
    assert np.isnan(odd.z[0, 1]) and not odd.unusual[0, 1]  # site 1 has one source


def test_model_diff_is_zero_against_itself_and_finds_a_forced_route(make_bias_toy, forcing):
    seqs = random_sequences(n=6)
    base = make_bias_toy("full")
    forced = make_bias_toy("full")
    forcing(forced, 5, "L2")
    a, b = (corpus_sweep(m, seqs, SweepSettings(batch_size=3, lens=False)) for m in (base, forced))
    itself = corpus_diff(a, a)
    assert np.nanmax(np.abs(itself.alpha)) == 0 and not itself.alpha_differs.any()
    diff = corpus_diff(a, b)
    assert diff.alpha_differs[4, 2] and diff.alpha[4, 2] > 0.7
    assert diff.largest[0]["site"] == 5 and diff.largest[0]["quantity"] in ("alpha", "entropy")
    with pytest.raises(ValueError, match="depths"):
        corpus_diff(a, corpus_sweep(make_bias_toy("full", n_layer=2), seqs, SweepSettings(lens=False)))


def test_cached_sweep_opens_without_running_the_model(make_model, tmp_path, monkeypatch):
    model = make_model("block", 2, seed=0)
    seqs = random_sequences(n=5)
    first = corpus_sweep(model, seqs, SweepSettings(batch_size=2), cache=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npz")
    assert json.loads((tmp_path / files[0]).read_text())["n_sequences"] == 5

    def forbidden(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(model, "forward", forbidden)
    again = corpus_sweep(model, seqs, SweepSettings(batch_size=2), cache=tmp_path)
    np.testing.assert_array_equal(again.alpha.mean, first.alpha.mean)
    assert again.n_tokens == first.n_tokens
    with pytest.raises(AssertionError, match="the model ran"):  # other settings: another key
        corpus_sweep(model, seqs, SweepSettings(batch_size=2, lens=False), cache=tmp_path)


def test_cancelled_sweep_resumes_from_its_saved_state(make_model, tmp_path):
    model = make_model("full", None, seed=1)
    seqs = random_sequences(n=9, ragged=True)
    settings = SweepSettings(batch_size=2)
    calls = []
    with pytest.raises(SweepCancelled) as stopped:
        corpus_sweep(model, seqs, settings, cache=tmp_path, cancel=lambda: len(calls) >= 2,
                     progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(2, 9), (4, 9)] and not stopped.value.partial.complete
    assert stopped.value.partial.n_sequences == 4
    assert any(".partial-" in p.name for p in tmp_path.iterdir())
    resumed_calls = []
    resumed = corpus_sweep(
        model, seqs, settings, cache=tmp_path, progress=lambda d, t: resumed_calls.append(d)
    )
    assert resumed_calls == [6, 8, 9] and resumed.complete
    whole = corpus_sweep(model, seqs, settings)
    for name in ("alpha", "input_rms", "loss_by_position"):
        np.testing.assert_allclose(getattr(resumed, name).seq_std, getattr(whole, name).seq_std, atol=1e-9)
    assert not any(".partial-" in p.name for p in tmp_path.iterdir())


def test_damaged_cache_file_is_measured_again(make_model, tmp_path):
    model = make_model("full", None, seed=1)
    seqs = random_sequences(n=3)
    corpus_sweep(model, seqs, cache=tmp_path)
    for p in tmp_path.glob("*.npz"):
        p.write_bytes(b"not a zip")
    assert corpus_sweep(model, seqs, cache=SweepCache(tmp_path)).n_sequences == 3


def test_text_sources(make_model, tmp_path):
    model = make_model("full", None)  # context 16, vocabulary "abcdefgh ?"
    (tmp_path / "a.txt").write_text("abcdefgh " * 10)
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.txt").write_text("abc" * 20)
    (folder / "sub" / "y.txt").write_text("hg")
    (tmp_path / "c.jsonl").write_text('{"text": "abcabcabcabcabcabcabc"}\n\n{"text": "ha"}\n')
    one = load_sequences(model, tmp_path / "a.txt", 8, 100)
    assert len(one) == 90 // 8 and one.tokens.shape == (11, 8) and one.n_tokens == 88
    docs = load_sequences(model, folder, 16, 100)
    assert docs.lengths.tolist() == [2, 16, 16, 16]  # sub/y.txt sorts before x.txt
    assert load_sequences(model, tmp_path / "c.jsonl", 16, 100).lengths.tolist() == [16, 2]
    spread = load_sequences(model, tmp_path / "a.txt", 8, 3)
    assert len(spread) == 3 and torch.equal(spread.tokens[-1], one.tokens[-1])  # evenly spaced, to the end
    assert spread.digest != one.digest
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    for source, match in ((tmp_path / "bad.jsonl", "no text field 'text'"), (tmp_path / "none", "no corpus")):
        with pytest.raises(CorpusError, match=match):
            load_sequences(model, source, 8, 10)
    with pytest.raises(CorpusError, match="between 2"):
        load_sequences(model, tmp_path / "a.txt", 100, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .txt files"):
        load_sequences(model, tmp_path / "empty", 8, 10)
