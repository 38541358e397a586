"""Corpus mode: a sweep run from the Compare page over a tiny corpus, then, in a fresh session, the
same sweep opened from the cache (the model is not run) on the Compare, Depth routing, Signal
dilution, Retrieval and Logit lens pages."""

import numpy as np

from probes.corpus import SweepSettings, corpus_sweep, load_sequences
from probes.corpus.measure import BatchMeasure

QUERY = {"evidence": "corpus", "max_seqs": "2", "models": ["Full AttnRes", "Block AttnRes"]}


def test_corpus_mode_runs_then_opens_from_the_cache(ui, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNRES_LENS_CACHE", str(tmp_path))
    at = ui.open_app(**QUERY)
    ui.no_failures(at)
    assert any("Not measured yet" in i.value for i in at.info) and not ui.charts(at)
    at.button(key="corpus_run").click().run()
    ui.no_failures(at)
    assert len(list(tmp_path.glob("*.json"))) == 2
    assert any("measured now" in c.value for c in at.caption)

    def forbidden(self, *args, **kwargs):
        raise AssertionError("the corpus sweep ran the model")

    monkeypatch.setattr(BatchMeasure, "__call__", forbidden)
    at = ui.open_app(**QUERY)  # a new session: everything below comes from the cache
    ui.no_failures(at)
    assert any("opened from the cache" in c.value for c in at.caption)
    heat = ui.chart_titled(at, "weights over the corpus")
    assert "2 sequences · 512 tokens" in heat["layout"]["title"]["subtitle"]["text"]
    for title in ("Stream magnitude", "Largest weight", "This prompt vs the corpus", "Routing difference"):
        ui.chart_titled(at, title)
    from app.models import shipped_entries
    from attnres import load_model

    block = load_model(shipped_entries()["Block AttnRes"].path)
    stats = corpus_sweep(block, load_sequences(block, None, 256, 2), SweepSettings(max_seqs=2), cache=True)
    drawn = ui.array(heat["data"][1]["z"])  # the second panel: Block; its readout row
    assert np.allclose(drawn[-1, : len(stats.sources[-1])], stats.alpha.seq_mean[-1], atol=1e-12)
    at.segmented_control(key="corpus_view").set_value("seq_std").run()
    subtitle = ui.chart_titled(at, "over the corpus")["layout"]["title"]["subtitle"]["text"]
    assert "spread across sequences" in subtitle
    at.switch_page("views/depth.py").run()
    ui.no_failures(at)
    assert any(t.value == "Depth-wise sinks over the corpus" for t in at.subheader)
    assert any("Rests on 2 sequences and 512 tokens" in c.value for c in at.caption)
    at.switch_page("views/dilution.py").run()
    ui.no_failures(at)
    ui.chart_titled(at, "Fig. 5b")
    at.switch_page("views/retrieval.py").run()
    ui.no_failures(at)
    assert [t.value for t in at.subheader][:2] == [
        "Strongest sources per site over the corpus",
        "This prompt",
    ]
    rows = at.dataframe[0].value  # Full's rows first, then Block's: Block's readout row is the last
    readout = stats.alpha.seq_mean[-1]
    top = stats.sources[-1][int(np.nanargmax(readout))]
    assert rows.iloc[-1]["top 1"].startswith(f"{top} ({np.nanmax(readout):.3f} ± ")
    assert len(rows) == 2 * stats.n_sites
    ui.chart_titled(at, "Fig. 9")  # the prompt's own drill-down is kept below
    at.switch_page("views/lens.py").run()
    ui.no_failures(at)
    kl = ui.chart_titled(at, "KL to the final output")
    block_line = [t for t in kl["data"] if t.get("mode") == "lines+markers"][1]
    np.testing.assert_allclose(ui.array(block_line["y"]), stats.lens_kl.seq_mean, rtol=1e-6)
    ui.chart_titled(at, "loss by position")
    assert any(t.value == "This prompt" for t in at.subheader)
