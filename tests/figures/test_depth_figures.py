"""Depth-weight heatmaps, entropy and sinks: titles, axes and exact numbers from the probes."""

import numpy as np
import pytest

import figures
import probes
from figures.depth import depth_grid
from figures.style import PRENORM_NOTE


def heatmap_z(fig, i=0) -> np.ndarray:
    return np.asarray(fig.data[i].z, dtype=np.float64)


@pytest.mark.parametrize("name", ["prenorm", "full"])
def test_heatmap_is_the_probe_mean_exactly(tiny_results, name):
    dw = tiny_results[name]["depth"]
    fig = figures.depth_heatmap(dw, name)
    np.testing.assert_array_equal(heatmap_z(fig), dw.mean.astype(np.float64))
    assert list(fig.data[0].y) == [f"L{l} ({k})" for l, k in zip(dw.sites, dw.kinds, strict=True)]
    assert list(fig.data[0].x) == list(dw.sources[-1])
    assert fig.layout.xaxis.title.text == "source"
    assert fig.layout.yaxis.title.text == "consumer site"
    assert fig.layout.title.text.startswith("Depth-attention weights")


def test_block_heatmap_puts_each_weight_under_its_label(tiny_results):
    dw = tiny_results["block"]["depth"]
    fig = figures.depth_heatmap(dw, "b")
    z, columns = heatmap_z(fig), list(fig.data[0].x)
    assert columns[0] == "emb" and columns[-1] == "partial"
    for row, labels in enumerate(dw.sources):
        for k, label in enumerate(labels):
            assert z[row, columns.index(label)] == np.float64(dw.mean[row, k])
    assert np.isnan(z).sum() == z.size - sum(len(s) for s in dw.sources)


def test_panels_token_view_and_prenorm_label(tiny_results):
    dw = tiny_results["prenorm"]["depth"]
    attn = figures.depth_heatmap(dw, "p", panel="attn")
    assert all(label.endswith("(attn)") for label in attn.data[0].y)
    assert PRENORM_NOTE in attn.layout.title.subtitle.text
    np.testing.assert_array_equal(heatmap_z(attn)[np.isfinite(heatmap_z(attn))], 1.0)
    one = figures.depth_heatmap(tiny_results["full"]["depth"], "f", panel="mlp", token=2)
    view = tiny_results["full"]["depth"].view("mlp")
    np.testing.assert_array_equal(heatmap_z(one), view.per_token[0, 2].astype(np.float64))
    assert "token #2" in one.layout.title.subtitle.text
    with pytest.raises(ValueError, match="panel"):
        figures.depth_heatmap(dw, panel="nope")


def test_side_by_side_share_one_colour_scale(shipped_results):
    names = list(shipped_results)
    dws = [shipped_results[n]["depth"] for n in names]
    fig = figures.depth_heatmaps(dws, names, panel="attn")
    assert len(fig.data) == 3
    assert {trace.coloraxis for trace in fig.data} == {"coloraxis"}
    routed = max(float(np.nanmax(dw.view("attn").mean[1:])) for dw in dws if dw.residual != "prenorm")
    assert fig.layout.coloraxis.cmin == 0.0
    assert fig.layout.coloraxis.cmax == pytest.approx(max(0.8, routed))
    assert any(PRENORM_NOTE in a.text for a in fig.layout.annotations)
    for trace, dw in zip(fig.data, dws, strict=True):
        np.testing.assert_array_equal(np.asarray(trace.z, dtype=np.float64), depth_grid(dw, "attn")[0])
    assert fig.layout.coloraxis.cmax < 1.0  # site 1's forced weight 1 saturates instead of stretching
    mlp = figures.depth_heatmaps(dws, names, panel="mlp")
    routed_mlp = max(float(np.nanmax(dw.view("mlp").mean)) for dw in dws if dw.residual != "prenorm")
    assert mlp.layout.coloraxis.cmax == pytest.approx(max(0.8, routed_mlp))
    both = figures.depth_zmax(dws, ("attn", "mlp"))
    assert both == max(fig.layout.coloraxis.cmax, mlp.layout.coloraxis.cmax)
    fixed = figures.depth_heatmaps(dws, names, panel="mlp", zmax=0.5)
    assert fixed.layout.coloraxis.cmax == 0.5


def test_token_source_heatmap_rows_are_escaped_tokens(tiny_results):
    result = tiny_results["full"]
    dw, tokens = result["depth"], result["prompt"].tokens
    fig = figures.token_source_heatmap(dw, 3, tokens)
    np.testing.assert_array_equal(heatmap_z(fig), dw.per_token[0, :, 2, :3].astype(np.float64))
    assert fig.data[0].y[2] == "2: ␣" and fig.data[0].y[3] == "3: &lt;"
    assert "⏎" in "".join(fig.data[0].y)
    assert fig.layout.title.text.startswith("Site L3 (attn)")


def test_entropy_chart_and_sinks_table(tiny_results, shipped_results):
    names = list(tiny_results)
    fig = figures.entropy_chart([tiny_results[n]["depth"] for n in names], names)
    assert fig.layout.yaxis.title.text == "entropy (nats)"
    np.testing.assert_allclose(fig.data[1].y, tiny_results["full"]["depth"].entropy, rtol=1e-6)
    sinks = probes.depth_sinks(shipped_results["block"]["depth"])
    rows = figures.sinks_table(sinks)
    assert len(rows) == len(sinks.labels)
    assert rows == [] or set(rows[0]) == {"site", "source", "mean weight", "token std", "prompt std"}
