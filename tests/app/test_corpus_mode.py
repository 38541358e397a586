"""Corpus mode: a sweep run from the Compare page over a tiny corpus, then, in a fresh session, the
same sweep opened from the cache (the model is not run) on the Compare, Depth routing and Signal
dilution pages."""

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

    def forbidden(self, *args, **kwargs):
        raise AssertionError("the corpus sweep ran the model")

    monkeypatch.setattr(BatchMeasure, "__call__", forbidden)
    at = ui.open_app(**QUERY)  # a new session: everything below comes from the cache
    ui.no_failures(at)
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
