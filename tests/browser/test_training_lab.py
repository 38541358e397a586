"""Training lab in a real browser: Train starts a run whose loss chart grows live; Stop ends it."""

import pytest

pytestmark = pytest.mark.browser
TIMEOUT_MS = 90_000  # training starts on a busy 2-core CPU

POINTS = """() => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')]
    .find(p => (p.layout?.title?.text || '').includes('Training loss'));
  return plot ? Math.max(0, ...plot.data.map(trace => (trace.x || []).length)) : 0;
}"""


def test_train_grows_the_loss_chart_and_stop_ends_the_run(new_page, app_url, ui):
    from playwright.sync_api import expect

    page = new_page()
    ui.open_view(page, app_url, "training_lab", "Training lab")
    page.get_by_role("button", name="Train", exact=True).click()
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_enabled(timeout=TIMEOUT_MS)
    page.wait_for_function(f"({POINTS})() >= 2", timeout=TIMEOUT_MS)
    first = page.evaluate(POINTS)
    page.wait_for_function(f"({POINTS})() > {first}", timeout=TIMEOUT_MS)  # the chart grows live
    grown = page.evaluate(POINTS)
    ui.screenshot(page, "training_lab_running")
    stop.click()
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled(timeout=TIMEOUT_MS)
    expect(stop).to_be_disabled()
    ui.expect_no_failure(page)
    assert grown > first >= 2
