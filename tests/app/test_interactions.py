"""Widgets change what is computed, and the URL reproduces a view."""

from __future__ import annotations

import re

import numpy as np


def heatmap_z(ui, at) -> list:
    return [d["z"] for d in ui.chart_titled(at, "Depth-attention weights")["data"] if d["type"] == "heatmap"]


def test_prompt_change_changes_the_heatmaps(ui, app):
    before = heatmap_z(ui, app)
    app.text_area(key="prompt").input("Now is the winter of our discontent").run()
    ui.no_failures(app)
    assert heatmap_z(ui, app) != before
    assert app.query_params["prompt"] == "Now is the winter of our discontent"


def test_token_selector_shows_one_token(ui, app):
    mean = heatmap_z(ui, app)
    app.selectbox(key="token").set_value(3).run()
    ui.no_failures(app)
    assert heatmap_z(ui, app) != mean
    assert "token" in ui.chart_titled(app, "Depth-attention weights")["layout"]["title"]["text"]
    assert app.query_params["token"] == "3"


def test_url_reproduces_the_view(ui):
    at = ui.open_app(models=["PreNorm", "Block AttnRes"], token="2", panel="mlp")
    ui.no_failures(at)
    assert at.multiselect(key="models").value == ["PreNorm", "Block AttnRes"]
    assert at.selectbox(key="token").value == 2
    assert len(heatmap_z(ui, at)) == 2


def test_invalid_url_values_fall_back_to_defaults(ui):
    at = ui.open_app(models=["no such model"], token="999", panel="<b>")
    ui.no_failures(at)
    assert at.multiselect(key="models").value == ["PreNorm", "Full AttnRes", "Block AttnRes"]
    assert at.selectbox(key="token").value == -1


def test_threshold_slider_changes_the_retrieval_graph(ui):
    at = ui.open_app("views/retrieval.py")
    ui.no_failures(at)
    before = [len(f["data"]) for f in ui.charts(at)]
    at.slider(key="threshold").set_value(0.9).run()
    ui.no_failures(at)
    after = [len(f["data"]) for f in ui.charts(at)]
    assert sum(after) < sum(before), "a higher threshold draws fewer arcs"
    assert at.query_params["threshold"] == "0.9"


def test_ablation_button_shows_a_delta(ui):
    at = ui.open_app("views/attribution.py", n_steps="16")
    ui.no_failures(at)
    assert any(
        "Attribution" in f["layout"]["title"]["text"] or "attribution" in f["layout"]["title"]["text"]
        for f in ui.charts(at)
    )
    at.button(key="ablate_uniform").click().run()
    ui.no_failures(at)
    delta = next(m for m in at.metric if m.label == "Δ loss")
    assert delta.value.startswith(("+", "-"))
    assert len(at.dataframe) >= 1
    at.button(key="ablate_plain_sum").click().run()
    assert len(ui.chart_titled(at, "loss")["data"][0]["x"]) == 2, "both ablations in the chart"


def test_site_selector_changes_the_token_source_view(ui):
    at = ui.open_app("views/depth.py", model="Full AttnRes")
    ui.no_failures(at)
    first = ui.charts(at)[2]
    at.selectbox(key="site").set_value(17).run()
    ui.no_failures(at)
    assert ui.charts(at)[2]["data"][0]["z"] != first["data"][0]["z"]


def test_training_step_slider_changes_the_weights(ui):
    at = ui.open_app("views/dynamics.py", models=["Full AttnRes"])
    ui.no_failures(at)
    final = heatmap_z(ui, at)
    at.select_slider(key="step").set_value(0).run()
    ui.no_failures(at)
    initial = ui.array(heatmap_z(ui, at)[0])
    assert not np.allclose(np.nan_to_num(initial), np.nan_to_num(ui.array(final[0])))
    for row in initial:  # zero-initialised queries: every site averages its sources uniformly
        weights = row[np.isfinite(row)]
        np.testing.assert_allclose(weights, 1.0 / len(weights), atol=1e-3)


def test_attribution_warns_when_the_integral_has_not_converged(ui):
    """Default prompt, Full model (the page's first): 16 steps miss the total by over 1%, 64 steps do
    not; the caption's total is the probe's."""
    from app.common import DEFAULT_PROMPT
    from attnres import load_model
    from probes import gate_attribution

    model = load_model(ui.REPO_ROOT / "sample_models" / "shakespeare-full")
    assert gate_attribution(model, DEFAULT_PROMPT, n_steps=16).relative_error()[0] > 0.01
    result = gate_attribution(model, DEFAULT_PROMPT, n_steps=64)
    assert result.relative_error()[0] < 0.01
    total = result.logprob_model[0] - result.logprob_baseline[0]

    coarse = ui.open_app("views/attribution.py", n_steps="16", prompt=DEFAULT_PROMPT)
    ui.no_failures(coarse)
    assert [w.value for w in coarse.warning if "not converged" in w.value], "16 steps should warn"
    fine = ui.open_app("views/attribution.py", n_steps="64", prompt=DEFAULT_PROMPT)
    ui.no_failures(fine)
    assert not [w.value for w in fine.warning if "not converged" in w.value]
    assert any(f"{total:+.3f} nats" in c.value.replace("\\", "") for c in fine.caption)


def test_attribution_position_selector_explains_that_position(ui):
    """position=3 in the URL: the page explains the prediction after token 3, with the probe's numbers."""
    from attnres import load_model
    from probes import gate_attribution

    at = ui.open_app("views/attribution.py", n_steps="16", position="3")
    ui.no_failures(at)
    model = load_model(ui.REPO_ROOT / "sample_models" / "shakespeare-full")
    prompt = at.session_state["prompt"]
    caption = next(c.value.replace("\\", "") for c in at.caption if "after position" in c.value)
    assert "after position 3 " in caption
    steps = int(re.search(r"at (\d+) steps", caption).group(1))  # refined up to 16, or converged earlier
    assert steps in (2, 4, 8, 16)
    expected = gate_attribution(model, prompt, positions=3, n_steps=steps)
    heat = ui.chart_titled(at, "IG attribution per depth gate")
    z = np.asarray(ui.array(heat["data"][0]["z"]), dtype=float)
    np.testing.assert_allclose(np.nansum(z), np.nansum(expected.attribution[0]), atol=1e-4)
    from probes import route_ablation

    site_chart = ui.chart_titled(at, "Routing weight vs attribution")
    routes = route_ablation(model, prompt, at.session_state["site"], positions=3)
    np.testing.assert_allclose(ui.array(site_chart["data"][2]["y"]), routes.effect[0], atol=1e-5)
    last = ui.open_app("views/attribution.py", n_steps="16")
    final = len(model.tokenizer.encode(prompt)) - 1
    assert any(f"after position {final} " in c.value.replace("\\", "") for c in last.caption)


def test_learn_page_sentence_is_measured_on_the_prompt(ui):
    import re

    import torch

    from attnres import load_model

    at = ui.open_app("views/learn.py")
    ui.no_failures(at)
    text = next(m.value for m in at.markdown if "Measured on this prompt" in m.value)
    line = next(x for x in text.splitlines() if x.startswith("- **PreNorm**"))
    growth, share = (float(v) for v in re.findall(r"= ([0-9.]+);.* hold ([0-9.]+) of", line)[0])
    model = load_model(ui.REPO_ROOT / "sample_models" / "shakespeare-prenorm")
    ids = torch.tensor([model.tokenizer.encode(ui.SHORT_PROMPT)])
    it = model(ids, return_internals=True).internals
    rms = [h[0].pow(2).mean(-1).sqrt().mean().item() for h in it.layer_inputs]  # token mean of RMS(h_l)
    L = len(it.sublayer_outputs)
    assert growth == round(rms[L - 1] / rms[1], 2)
    # the deeper half's own share: <v_l, h_{l+1}> / ||h_{l+1}||^2 (PreNorm adds v_l with weight 1)
    shares = [
        (
            (it.sublayer_outputs[l - 1][0] * it.layer_inputs[l][0]).sum(-1)
            / it.layer_inputs[l][0].pow(2).sum(-1)
        )
        .mean()
        .item()
        for l in range(L // 2 + 1, L + 1)
    ]
    assert abs(share - sum(shares) / len(shares)) < 6e-4


def test_lens_page_draws_the_first_positions_then_every_position(ui, monkeypatch):
    """A lens read in two steps (as for a large model) ends as the whole lens of the probe."""
    from attnres import load_model
    from probes import logit_lens

    monkeypatch.setattr("probes.lens.QUICK_MACS", 0)  # every model's lens is read in two steps
    prompt = "a lens read in two steps, then merged"  # no other test caches this prompt
    at = ui.open_app("views/lens.py", models=["Full AttnRes"], prompt=prompt)
    ui.no_failures(at)
    model = load_model(ui.REPO_ROOT / "sample_models" / "shakespeare-full")
    expected = logit_lens(model, prompt, sources=False)
    z = np.asarray(ui.array(ui.chart_titled(at, "Logit lens")["data"][0]["z"]), dtype=float)
    want = np.where(expected.target_rank[0] < 0, np.nan, expected.target_rank[0]).T
    np.testing.assert_array_equal(z, want)  # every position read: NaN only at the last (no target)
    assert not [c.value for c in at.caption if "the others follow" in c.value]
