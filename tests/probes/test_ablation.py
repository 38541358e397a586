"""Ablations: hand values, no-ops, no mutation, thread safety."""

import threading

import numpy as np
import pytest
import torch

from probes import MODES, ablate, make_batch


def test_uniform_on_a_fresh_model_and_plain_sum_on_prenorm_change_nothing(make_model):
    fresh = make_model("full")
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if name.endswith("res.query"):
                p.zero_()
    for model, mode in ((fresh, "uniform"), (make_model("prenorm"), "plain_sum")):
        result = ablate(model, "abcdefg", site=4, mode=mode)
        assert result.delta_loss == 0.0 and result.delta_accuracy == 0.0
        np.testing.assert_array_equal(result.top_ids_before, result.top_ids_after)


def test_plain_sum_at_the_readout_by_hand(make_bias_toy):
    model = make_bias_toy("full")
    result = ablate(model, "abcd", site=7, mode="plain_sum", top_k=3)
    batch = make_batch(model, "abcd")
    v0 = model.wte(batch.tokens) + model.wpe.weight[:4]
    h = v0 + torch.zeros(16).index_fill(0, torch.arange(1, 7), 1.0)  # v_0 + e_1 + .. + e_6
    logits = model.readout(h)
    loss = torch.nn.functional.cross_entropy(logits[0, :3], batch.tokens[0, 1:])
    assert result.loss_after == pytest.approx(loss.item(), rel=1e-5)
    top = logits[0, 3].softmax(-1).topk(3)
    np.testing.assert_array_equal(result.top_ids_after[0], top.indices.numpy())
    np.testing.assert_allclose(result.top_probs_after[0], top.values.detach().numpy(), rtol=1e-5)


def test_zeroing_the_only_read_source_empties_the_readout(make_bias_toy, forcing):
    model = make_bias_toy("full")
    forcing(model, 7, "L6")
    result = ablate(model, "abcd", site=7, mode="zero_source", source="L6")
    assert result.source == "L6"
    np.testing.assert_allclose(result.top_probs_after[0], 1 / model.config.vocab_size, atol=1e-5)
    argmax = ablate(model, "abcd", site=7, mode="argmax")
    assert argmax.delta_loss == pytest.approx(0.0, abs=1e-5)


def test_bad_arguments_say_what_is_wrong(make_model):
    model = make_model("block", 2)
    with pytest.raises(ValueError, match="has no source 'L3'"):
        ablate(model, "abc", site=4, mode="zero_source", source="L3")
    with pytest.raises(ValueError, match="site must be"):
        ablate(model, "abc", site=9, mode="uniform")
    with pytest.raises(ValueError, match="mode must be"):
        ablate(model, "abc", site=2, mode="shuffle")


@pytest.mark.parametrize("rule", ["prenorm", "full", "block"])
def test_no_mutation_and_threads_agree_with_sequential_runs(make_model, rule):
    model = make_model(rule, 2 if rule == "block" else None)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    jobs = [(site, mode) for site in (2, 5, 7) for mode in MODES]
    sequential = [ablate(model, ["abcdefg", "hgf"], site, mode, source=0).to_dict() for site, mode in jobs]
    concurrent = [None] * len(jobs)

    def run(i, site, mode):
        concurrent[i] = ablate(model, ["abcdefg", "hgf"], site, mode, source=0).to_dict()

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert concurrent == sequential
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@torch.no_grad()
def two_full_runs(model, text, site, mode, index):
    """The ablation as first written: a whole unablated and a whole ablated forward, logits of each."""
    from probes.ablation import ablated_weights

    def plain(l, sources, weights):
        return sources.sum(0) if weights is None else torch.einsum("btk,kbtd->btd", weights, sources)

    def ablated(l, sources, weights):
        return plain(l, sources, ablated_weights(mode, sources, weights, index) if l == site else weights)

    tokens = make_batch(model, text).tokens
    return model(tokens, mixer=plain).logits, model(tokens, mixer=ablated).logits


@pytest.mark.parametrize(("rule", "block"), [("prenorm", None), ("full", None), ("block", 2), ("block", 3)])
def test_reusing_the_unablated_prefix_changes_no_bit(make_model, rule, block):
    model = make_model(rule, block)
    texts = ["abc defg", "hh"]
    targets = make_batch(model, texts).tokens[:, 1:]
    for site in (1, 2, 4, model.config.n_sublayers + 1):
        for mode in MODES:
            index = 0 if mode == "zero_source" else None
            result = ablate(model, texts, site=site, mode=mode, source=index)
            before, after = two_full_runs(model, texts, site, mode, index)
            real = make_batch(model, texts).mask[:, 1:]
            for logits, loss in ((before, result.loss_before), (after, result.loss_after)):
                assert (
                    loss
                    == torch.nn.functional.cross_entropy(logits[:, :-1][real].float(), targets[real]).item()
                )
            probs = after[[0, 1], [7, 1]].softmax(-1).topk(5)
            np.testing.assert_array_equal(result.top_ids_after, probs.indices.numpy())
            np.testing.assert_array_equal(result.top_probs_after, probs.values.numpy())  # exactly
