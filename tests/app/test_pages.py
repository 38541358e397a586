"""Every page runs on the shipped sample models, with a stable title and at least one chart."""

from __future__ import annotations

import re

import pytest

TITLES = {
    "views/compare.py": "Compare models",
    "views/depth.py": "Depth routing",
    "views/dilution.py": "Signal dilution",
    "views/retrieval.py": "Retrieval",
    "views/attribution.py": "Attribution & ablation",
    "views/lens.py": "Logit lens",
    "views/dynamics.py": "Training dynamics",
    "views/learn.py": "Learn: signal dilution",
    "views/inspector.py": "Checkpoint inspector",
}


@pytest.mark.parametrize("page", list(TITLES))
def test_page_runs(ui, page):
    at = ui.open_app(page)
    ui.no_failures(at)
    assert [t.value for t in at.title] == [TITLES[page]]
    if page != "views/inspector.py":
        figures = ui.charts(at)
        assert figures, "a page should show something with no clicks"
        assert all(f["layout"]["title"]["text"] for f in figures), "every chart has a stable title"


def test_home_is_compare_with_the_trio_and_a_loss_each(ui, app):
    ui.no_failures(app)
    assert app.title[0].value == "Compare models"
    assert app.multiselect(key="models").value == ["PreNorm", "Full AttnRes", "Block AttnRes"]
    losses = [m for m in app.metric if "loss on the prompt" in m.label]
    assert len(losses) == 3
    assert all(0.0 < float(m.value.split()[0]) < 10.0 for m in losses)
    heatmaps = [d for d in ui.charts(app)[0]["data"] if d["type"] == "heatmap"]
    assert len(heatmaps) == 3
    assert len({d.get("coloraxis") for d in heatmaps}) == 1, "one shared colour scale"


def test_inspector_shows_report_and_lint_of_a_shipped_model(ui):
    at = ui.open_app("views/inspector.py")
    labels = {m.label: m.value for m in at.metric}
    assert labels["Format"] == "attnres-lens"
    assert labels["Parameters"] == "922,272"
    assert any("Health lint" in s.value for s in at.subheader)


def test_download_row_under_each_chart(ui, app):
    names = [b.label for b in app.get("download_button")]
    assert {"HTML", "JSON"} <= set(names)
    assert names.count("HTML") == len(ui.charts(app))


def test_learn_page_table_shows_the_losses_of_the_shipped_cards(ui):
    cards = [p.read_text() for p in sorted((ui.REPO_ROOT / "sample_models").glob("*/README.md"))]

    def row(card: str, field: str) -> float:
        return float(re.search(rf"^\| {re.escape(field)} \| ([0-9.]+) \|$", card, re.M).group(1))

    fields = ("parameters", "final train loss (fixed training slice)", "final validation loss")
    expected = {tuple(row(card, field) for field in fields) for card in cards}
    at = ui.open_app("views/learn.py")
    ui.no_failures(at)
    table = at.dataframe[0].value
    shown = set(zip(table["parameters"], table["train loss"], table["validation loss"], strict=True))
    assert len(cards) == 3 and shown == expected
