"""Logit lens: the readout site is the model's output exactly."""

import numpy as np
import pytest
import torch

from probes import logit_lens, make_batch, trace
from probes.lens import first_positions, lens_stats, merge_lenses, read_positions

RULES = [("prenorm", None), ("full", None), ("block", 2), ("block", 3)]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_readout_site_reproduces_the_models_logits(make_model, rule, block):
    model = make_model(rule, block)
    batch = make_batch(model, ["abc defg", "hh"])
    tr = trace(model, batch)
    sequential = model(batch.tokens, depth_impl="sequential").logits
    assert torch.equal(model.readout(tr.layer_inputs[-1]), sequential)
    torch.testing.assert_close(tr.logits, model(batch.tokens).logits, atol=1e-5, rtol=1e-5)
    result = logit_lens(model, batch, top_k=3)
    real = result.mask
    assert (result.kl_to_final[:, :, -1][real] == 0).all()
    top = sequential.softmax(-1).topk(3)
    np.testing.assert_array_equal(result.top_ids[:, :, -1][real], top.indices[batch.mask].numpy())
    ranks = result.target_rank[:, :, -1]
    assert (ranks[~real] == -1).all() and (ranks[0, -1] == -1)


def test_lens_statistics_by_hand(make_model):
    model = make_model("full")
    h = torch.zeros(1, 2, 16)  # a zero state reads as the uniform distribution
    final = torch.tensor([0.0, 1.0] + [0.0] * 8).log_softmax(-1).expand(1, 2, 10)
    with torch.no_grad():
        stats = lens_stats(model, h, final, torch.tensor([[3, -1]]), k=2)
    np.testing.assert_allclose(stats["entropy"].numpy(), np.log(10), rtol=1e-6)
    p = final[0, 0].exp()
    np.testing.assert_allclose(
        stats["kl_to_final"][0, 0].item(), (p * (p.log() + np.log(10))).sum().item(), rtol=1e-5
    )
    assert stats["target_rank"].tolist() == [[0, -1]]
    assert stats["target_logprob"][0, 0].item() == pytest.approx(-np.log(10), rel=1e-6)


def test_source_lens_covers_every_source(make_model):
    result = logit_lens(make_model("block", 2), "abcd")
    assert result.source_entropy.shape == (1, 4, 7) and result.entropy_mean.shape == (7,)
    assert np.isfinite(result.kl_mean).all() and result.kl_mean[-1] == 0


@torch.no_grad()
def full_vocabulary_lens(model, batch, k):
    """The lens as first written: a full [B, T, vocab] log-softmax per state, every statistic from it."""
    tr = trace(model, batch)
    final = tr.logits.float().log_softmax(-1)
    targets = torch.full_like(batch.tokens, -1)
    targets[:, :-1] = torch.where(batch.mask[:, 1:], batch.tokens[:, 1:], -1)
    out = []
    for h in [*tr.layer_inputs, tr.embedding, *tr.sublayer_outputs]:
        logprobs = model.readout(h).float().log_softmax(-1)
        probs = logprobs.exp()
        target_logprob = logprobs.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
        out.append(
            {
                "top_ids": probs.topk(k).indices,
                "top_probs": probs.topk(k).values,
                "entropy": -(probs * logprobs).sum(-1),
                "kl_to_final": (final.exp() * (final - logprobs)).sum(-1),
                "target_rank": (logprobs > target_logprob[..., None]).sum(-1),
                "target_logprob": target_logprob,
            }
        )
    return out, targets


@pytest.mark.parametrize(("rule", "block"), RULES)
@pytest.mark.parametrize("chunk_bytes", [1, 3000, 2**30])  # one position a chunk, a few, all at once
def test_chunked_lens_equals_the_full_vocabulary_formula(make_model, monkeypatch, rule, block, chunk_bytes):
    monkeypatch.setattr("probes.lens.CHUNK_BYTES", chunk_bytes)
    model = make_model(rule, block)
    batch = make_batch(model, ["abc defg", "hh"])
    reference, targets = full_vocabulary_lens(model, batch, 3)
    result = logit_lens(model, batch, top_k=3)
    real, has = batch.mask.numpy(), (targets >= 0).numpy()
    S = len(result.sites)
    for s, ref in enumerate(reference):
        prefix, i = ("", s) if s < S else ("source_", s - S)
        for name, value in ref.items():
            got = getattr(result, prefix + name)[:, :, i]
            where = has if name.startswith("target") else real
            if name.endswith("ids") or name == "target_rank":
                np.testing.assert_array_equal(got[where], value.numpy()[where], err_msg=prefix + name)
            else:
                np.testing.assert_allclose(got[where], value.numpy()[where], atol=1e-6, rtol=1e-6)


def test_lens_at_chosen_positions_and_without_sources(make_model):
    model = make_model("block", 2)
    everything = logit_lens(model, "abcdefg", top_k=2)
    some = logit_lens(model, "abcdefg", top_k=2, positions=[1, -1], sources=False)
    assert some.source_entropy.shape == (1, 7, 0) and some.source_top_ids.shape == (1, 7, 0, 2)
    for name in ("entropy", "kl_to_final", "top_probs", "target_logprob"):
        np.testing.assert_allclose(getattr(some, name)[0, [1]], getattr(everything, name)[0, [1]], atol=1e-6)
        assert np.isnan(getattr(some, name)[0, [0, 2, 3, 4, 5]]).all()
    np.testing.assert_array_equal(some.top_ids[0, [1, 6]], everything.top_ids[0, [1, 6]])
    assert (some.target_rank[0, [0, 2, 6]] == -1).all()  # not read, or no next token (6)
    np.testing.assert_allclose(some.entropy_mean, everything.entropy[0, [1, 6]].mean(0), atol=1e-6)


@pytest.mark.parametrize(("rule", "block"), RULES[:3])
def test_two_reads_merged_equal_the_full_vocabulary_formula(make_model, rule, block):
    model = make_model(rule, block)
    batch = make_batch(model, ["abc defg", "hh"])
    reference, targets = full_vocabulary_lens(model, batch, 3)
    first = logit_lens(model, batch, top_k=3, positions=[0, -1], sources=False)
    rest = logit_lens(model, batch, top_k=3, positions=[1, 2, 3, 4, 5, 6], sources=False)
    merged = merge_lenses(first, rest)
    real, has = batch.mask.numpy(), (targets >= 0).numpy()
    np.testing.assert_array_equal(read_positions(merged), real)
    for s, ref in enumerate(reference[: len(merged.sites)]):
        for name, value in ref.items():
            where = has if name.startswith("target") else real
            got, want = getattr(merged, name)[:, :, s][where], value.numpy()[where]
            np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6, err_msg=name)
    site_entropy = np.stack([r["entropy"].numpy() for r in reference[: len(merged.sites)]], -1)
    np.testing.assert_allclose(merged.entropy_mean, site_entropy[real].mean(0), atol=1e-6)
    site_rank = np.stack([r["target_rank"].numpy() for r in reference[: len(merged.sites)]], -1)
    np.testing.assert_allclose(merged.target_rank_mean, site_rank[has].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="different prompts"):
        merge_lenses(first, logit_lens(model, batch, top_k=3, positions=[1]))  # with sources


def test_first_positions_hold_the_asked_position_and_the_last_ones(make_model, monkeypatch):
    model = make_model("full")
    assert first_positions(model, 40, -5) is None  # a small model's whole lens is quick
    monkeypatch.setattr("probes.lens.QUICK_MACS", 0)
    assert first_positions(model, 40, -1, count=4) == [36, 37, 38, 39]
    assert first_positions(model, 40, 3, count=4) == [3, 37, 38, 39]
    assert first_positions(model, 40, -2, count=4) == [36, 37, 38, 39]
    assert first_positions(model, 4, -1, count=4) is None  # every position is already few
    with pytest.raises(ValueError, match="within the 40 tokens"):
        first_positions(model, 40, 40)
