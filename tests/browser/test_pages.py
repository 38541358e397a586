"""Every page in a real Chromium: its title, its charts drawn with the right titles, no
exception or error box, and a full-page screenshot under test-output/screenshots/."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

# (URL path, nav link, page title, chart title prefixes in page order) for a fresh session
PAGES = [
    (
        "",
        "Compare",
        "Compare models",
        ["Depth-attention weights — all sites · token mean", "Stream magnitude RMS(h_l) per site"],
    ),
    (
        "depth",
        "Depth routing",
        "Depth routing",
        [
            "Depth-attention weights — Block AttnRes (block) · pre-attention",
            "Depth-attention weights — Block AttnRes (block) · pre-MLP",
            "Site L9 (attn): weight of each source per token",
            "Entropy of depth-attention weights per site",
        ],
    ),
    (
        "dilution",
        "Signal dilution",
        "Signal dilution",
        [
            "Stream magnitude RMS(h_l) per site",
            "Update ratio ||v_l|| / ||h_l|| per layer",
            "Share of the next input held by layer l's update",
            "Fig. 5b — output magnitude per Transformer block",
            "Fig. 5c — gradient magnitude per Transformer block",
        ],
    ),
    (
        "retrieval",
        "Retrieval",
        "Retrieval",
        [
            "Who reads whom — PreNorm (prenorm)",
            "Fig. 9 — PreNorm (prenorm)",
            "Who reads whom — Full AttnRes (full)",
            "Fig. 9 — Full AttnRes (full)",
        ],
    ),
    (
        "attribution",
        "Attribution & ablation",
        "Attribution & ablation",
        ["Routing weight vs attribution at L17 (readout)", "IG attribution per depth gate"],
    ),
    (
        "lens",
        "Logit lens",
        "Logit lens",
        [f"Logit lens — {name}" for name in ("PreNorm", "Full AttnRes", "Block AttnRes")],
    ),
    (
        "dynamics",
        "Training dynamics",
        "Training dynamics",
        [
            "Depth-attention weights — all sites · token mean",
            "Stream magnitude RMS(h_l) per site",
            "Training loss (train solid, validation dashed)",
            "Depth-attention weights over training — all sites at step 0, step 250, step 1500, step 5000",
        ],
    ),
    ("training_lab", "Training lab", "Training lab", []),  # charts only once Train is pressed
    (
        "learn",
        "Learn: signal dilution",
        "Learn: signal dilution",
        [
            "Signal dilution in a toy stream of 32 layers",
            "Stream magnitude RMS(h_l) per site",
            "Share of the next input held by layer l's update",
        ],
    ),
    ("inspector", "Checkpoint inspector", "Checkpoint inspector", []),
]
NO_SIDEBAR_PROMPT = {"training_lab", "inspector"}


@pytest.mark.parametrize(("path", "link", "title", "charts"), PAGES, ids=[p[1] for p in PAGES])
def test_page_renders(new_page, app_url, ui, path, link, title, charts):
    page = new_page()
    ui.open_view(page, app_url, path, title, prompt=ui.SHORT_PROMPT)
    ui.expect_charts(page, charts)
    ui.expect_no_failure(page)
    ui.screenshot(page, path or "compare")


def test_inspector_shows_the_default_model(new_page, app_url, ui):
    from playwright.sync_api import expect

    page = new_page()
    ui.open_view(page, app_url, "inspector", "Checkpoint inspector")
    expect(page.get_by_test_id("stMetricValue")).to_have_text(["attnres-lens", "922,272", "5,000"])
    expect(page.get_by_test_id("stDataFrame").filter(visible=True)).to_have_count(2)  # queries, cosines
    expect(page.get_by_test_id("stAlertContentSuccess")).to_have_text(["No problems found."])


def test_training_lab_waits_for_train(new_page, app_url, ui):
    from playwright.sync_api import expect

    page = new_page()
    ui.open_view(page, app_url, "training_lab", "Training lab")
    expect(page.get_by_test_id("stAlertContentInfo")).to_have_text(
        [re.compile("^Pick a preset and press Train")]
    )
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()


def test_sidebar_walks_every_page_keeping_the_prompt(new_page, app_url, ui):
    """Each nav link opens its page at its own URL path; the prompt follows the session."""
    from playwright.sync_api import expect

    page = new_page()
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    ui.open_view(page, app_url, "", "Compare models", prompt=ui.SHORT_PROMPT)
    for path, link, title, _ in [*PAGES[1:], PAGES[0]]:
        ui.go_to(page, link, title)
        assert page.url.split("?")[0].rstrip("/") == ui.url_of(app_url, path).rstrip("/")
        ui.expect_no_failure(page)
        if path in NO_SIDEBAR_PROMPT:
            continue
        expect(ui.prompt_box(page)).to_have_value(ui.SHORT_PROMPT)
        assert ui.query_of(page)["prompt"] == [ui.SHORT_PROMPT]
        expect(page.locator(".gtitle")).not_to_have_count(0)
    shown = [text.split("\n")[-1] for text in links.all_inner_texts()]  # minus the icon's name
    assert shown == [link for _, link, _, _ in PAGES], "the nav and PAGES differ: a page is untested"
