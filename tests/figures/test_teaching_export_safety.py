"""The dilution toy against its hand formula, exports (offline HTML, PNG, JSON, CSV), and escaping."""

import json
import re
import shutil

import numpy as np
import pytest

import figures
import probes
from figures.export import offline_problems
from figures.style import safe_label

SCRIPT = "<script>alert(1)</script>"


def test_prenorm_toy_matches_the_hand_formula():
    sim = figures.simulate_dilution(6, 0.5, 1.3, "prenorm", seed=3)
    u = 0.5 * 1.3 ** np.arange(6)
    squares = np.concatenate([[1.0], u**2])  # ||v_0||^2 = 1, ||v_l||^2 = u_l^2
    np.testing.assert_allclose(sim["update_norms"], u)
    np.testing.assert_allclose(sim["stream_norm"], np.sqrt(np.cumsum(squares)), rtol=1e-12)
    np.testing.assert_allclose(sim["share_final"], squares / squares.sum(), rtol=1e-10)
    np.testing.assert_allclose(sim["share_next"], u**2 / np.cumsum(squares)[1:], rtol=1e-10)
    np.testing.assert_allclose(sim["share"].sum(1), 1.0, rtol=1e-12)


def test_attnres_toy_keeps_the_newest_share_bounded():
    recency = 1.0
    sim = figures.simulate_dilution(40, 1.0, 1.0, "attnres", recency=recency)
    j = np.arange(40)
    expected = [1.0 / np.exp(-2 * recency * j[: l + 1]).sum() for l in range(1, 41)]
    np.testing.assert_allclose(sim["share_next"], expected, rtol=1e-10)
    assert sim["share_next"].min() >= 1 - np.exp(-2 * recency) - 1e-12
    prenorm = figures.simulate_dilution(40, 1.0, 1.0, "prenorm")
    assert prenorm["share_next"][-1] == pytest.approx(1 / 41)
    assert sim["stream_norm"].max() <= 1.0 + 1e-12 < prenorm["stream_norm"][-1]
    fig = figures.dilution_chart([prenorm, sim])
    assert "40 layers" in fig.layout.title.text and len(fig.data) == 4
    with pytest.raises(ValueError, match="rule"):
        figures.simulate_dilution(3, 1.0, 1.0, "sideways")


def test_html_is_offline_with_plotly_inlined(tiny_results):
    fig = figures.depth_heatmap(tiny_results["full"]["depth"], "full")
    html = figures.to_html(fig)
    assert offline_problems(html) == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", html) and len(html) > 1_000_000
    assert offline_problems(html.replace("<script>", '<script src="https://cdn.plot.ly/x.js">', 1))
    fragment = figures.to_html(fig, full_html=False, include_plotlyjs=False)
    assert len(fragment) < 100_000 and offline_problems(fragment, bundles=0) == []
    with pytest.raises(ValueError, match="CDN"):
        figures.to_html(fig, include_plotlyjs="cdn")


@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("google-chrome") is None,
    reason="PNG export needs Chromium",
)
def test_png_export(tiny_results):
    fig = figures.entropy_chart([tiny_results["full"]["depth"]], ["full"])
    png = figures.to_png(fig, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_and_csv(tiny_results):
    dw = tiny_results["block"]["depth"]
    data = json.loads(figures.to_json(dw))
    assert data["mean"][0][1] is None and data["residual"] == "block"
    assert json.loads(figures.to_json({"x": np.float32(0.5), "y": [np.nan]})) == {"x": 0.5, "y": [None]}
    assert "data" in json.loads(figures.to_json(figures.depth_heatmap(dw)))
    text = figures.to_csv([{"a": 1, "b": None}, {"a": 2, "c": "x"}])
    assert text.splitlines() == ["a,b,c", "1,,", "2,,x"]
    grid = figures.to_csv(np.array([[1.0, np.nan], [0.25, 2.0]]))
    assert grid.splitlines() == ["1.0,", "0.25,2.0"]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def test_script_tokens_and_names_are_shown_as_text(tiny_models, tiny_results):
    assert safe_label(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert safe_label(" \n") == "␣⏎"
    model = tiny_models["full"]
    text = "<script>"
    result = tiny_results["full"]
    tokens = probes.encode_prompt(model, text).tokens
    lens = probes.logit_lens(model, text)
    figs = [
        figures.depth_heatmap(result["depth"], SCRIPT),
        figures.depth_heatmaps([result["depth"]], [SCRIPT]),
        figures.token_source_heatmap(probes.depth_weights(model, text), 2, tokens),
        figures.logit_lens_heatmap(lens, "entropy", SCRIPT, tokens=tokens, tokenizer=model.tokenizer),
        figures.norm_growth_chart([result["norms"]], [SCRIPT]),
        figures.retrieval_graph(result["retrieval"], 0.1, SCRIPT),
        figures.loss_curves({SCRIPT: [{"step": 1, "train_loss": 2.0}]}),
    ]
    for fig in figs:
        strings = list(_strings(fig.to_plotly_json()))
        assert not any("<script" in s for s in strings), fig.layout.title.text
    assert "&lt;script&gt;" in figs[0].layout.title.text
    assert "0: &lt;" in figs[2].data[0].y
    rows = figures.logit_lens_table(lens, -1, model.tokenizer) + figures.retrieval_summary(
        [result["retrieval"]], [SCRIPT]
    )
    assert not any("<" in str(v) for row in rows for v in row.values())
    html = figures.to_html(figs[0], full_html=False, include_plotlyjs=False)
    assert SCRIPT not in html
