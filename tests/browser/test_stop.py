"""A slow probe can be stopped, and the session goes on working: a server whose every progress
report sleeps (a test-only environment variable) makes the shipped models' attribution slow."""

import pytest

pytestmark = pytest.mark.browser
DELAY_S = "1.5"
NEW_PROMPT = "Friends, Romans"


@pytest.fixture(scope="module")
def slow_url(playwright_api, ui):
    from app.progressive import DELAY_ENV

    with ui.serve("slow-server", {DELAY_ENV: DELAY_S}) as url:
        yield url


def test_stop_a_running_attribution_then_change_the_prompt(browser, slow_url, ui):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        page = context.new_page()
        page.goto(ui.url_of(slow_url, "attribution", prompt=ui.SHORT_PROMPT))
        expect(page.locator("h1")).to_have_text("Attribution & ablation")
        stop = page.get_by_role("button", name="Stop", exact=True)
        expect(stop).to_be_visible()
        expect(page.get_by_test_id("stProgress")).to_be_visible()
        stop.click()
        expect(page.get_by_text("Integrated gradients stopped")).to_be_visible()
        ui.settled(page)
        expect(page.get_by_role("button", name="Continue", exact=True)).to_be_visible()
        expect(stop).to_have_count(0)
        ui.expect_no_failure(page)
        ui.screenshot(page, "attribution_stopped")

        ui.set_prompt(page, NEW_PROMPT)  # the same session, another prompt: computed afresh
        expect(page.get_by_text("Integrated gradients stopped")).to_have_count(0)
        ui.expect_charts(page, ["Routing weight vs attribution", "IG attribution per depth gate"])
        last = len(NEW_PROMPT) - 1  # the shipped models read characters
        expect(page.get_by_text(f"after position {last} ", exact=False).first).to_be_visible()
        ui.expect_no_failure(page)
    finally:
        context.close()
