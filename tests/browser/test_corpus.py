"""Corpus mode in a real Chromium: the Compare page switched to corpus evidence on four sequences
runs the sweep, draws its charts and says what they rest on; a second visit opens from the cache."""

import pytest

pytestmark = pytest.mark.browser
QUERY = {"evidence": "corpus", "max_seqs": "4", "models": ["Block AttnRes"]}
CHARTS = [
    "Depth-attention weights over the corpus",
    "Stream magnitude RMS(h_l)",
    "Largest weight",
    "Does a louder source draw more weight?",
    "This prompt vs the corpus",
]


@pytest.fixture(scope="module")
def corpus_url(playwright_api, ui, tmp_path_factory):
    with ui.serve("corpus-server", {"ATTNRES_LENS_CACHE": str(tmp_path_factory.mktemp("cache"))}) as url:
        yield url


def test_corpus_evidence_runs_once_then_opens_from_the_cache(browser, corpus_url, ui):
    from playwright.sync_api import expect

    for visit in ("measured now", "opened from the cache"):
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        try:
            page = context.new_page()
            ui.open_view(page, corpus_url, "", "Compare models", prompt=ui.SHORT_PROMPT, **QUERY)
            run = page.get_by_role("button", name="Run the corpus sweep", exact=True)
            if visit == "measured now":
                expect(page.get_by_text("Not measured yet on this corpus: Block AttnRes")).to_be_visible()
                run.click()
            else:
                expect(run).to_have_count(0)
            caption = page.get_by_text("Corpus: heldout · 4 sequences · 1,024 tokens per model", exact=False)
            expect(caption).to_contain_text(visit)
            ui.settled(page)
            ui.expect_charts(page, CHARTS)
            if visit == "opened from the cache":
                expect(page.get_by_text("Not measured yet", exact=False)).to_have_count(0)
            ui.expect_no_failure(page)
        finally:
            context.close()
