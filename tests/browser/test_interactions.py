"""What a person does in a real Chromium: change the prompt or the models and see the view follow,
share a link, upload bad checkpoints, type HTML into the prompt, and use the app from two sessions
at once."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

OTHER_PROMPT = "Now is the winter"
XSS_PROMPT = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _expect():
    from playwright.sync_api import expect  # noqa: PLC0415 (the conftest skips without playwright)

    return expect


def _pick(page, label: str, option: str) -> None:
    """Chooses ``option`` in the selectbox labelled ``label``."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def _chips(page) -> list[str]:
    """The models chosen in the sidebar multiselect."""
    return page.get_by_test_id("stMultiSelect").locator("[data-tag] span[title]").all_inner_texts()


def test_prompt_change_updates_compare(new_page, app_url, ui):
    expect = _expect()
    page = new_page()
    ui.open_view(page, app_url, "", "Compare models", prompt=ui.SHORT_PROMPT)
    caption = page.get_by_text(re.compile(r"^Prompt: \d+ tokens\.$"))
    expect(caption).to_have_text(f"Prompt: {len(ui.SHORT_PROMPT)} tokens.")
    expect(page.get_by_test_id("stMetricValue")).to_have_count(3)  # drawn after the caption
    before = ui.metric_values(page)
    assert len(before) == 3 and all(v.endswith(" nats") for v in before), before

    ui.set_prompt(page, OTHER_PROMPT)
    expect(caption).to_have_text(f"Prompt: {len(OTHER_PROMPT)} tokens.")
    expect(page.get_by_test_id("stMetricValue")).to_have_count(3)
    after = ui.metric_values(page)
    assert all(a != b for a, b in zip(after, before, strict=True)), (before, after)
    expect(ui.prompt_box(page)).to_have_value(OTHER_PROMPT)
    ui.expect_charts(page, ["Depth-attention weights — all sites", "Stream magnitude RMS(h_l) per site"])
    ui.expect_no_failure(page)


def test_model_change_updates_depth_page(new_page, app_url, ui):
    expect = _expect()
    page = new_page()
    ui.open_view(page, app_url, "depth", "Depth routing", prompt=ui.SHORT_PROMPT)
    titles = page.locator(".gtitle")
    expect(titles.first).to_have_text(re.compile("^Depth-attention weights — Block AttnRes"))

    _pick(page, "Model", "Full AttnRes")
    expect(titles).to_have_text(
        [
            re.compile("^Depth-attention weights — Full AttnRes \\(full\\) · pre-attention"),
            re.compile("^Depth-attention weights — Full AttnRes \\(full\\) · pre-MLP"),
            re.compile("^Site L9"),
            re.compile("^Entropy"),
        ]
    )
    ui.settled(page)
    assert ui.query_of(page)["model"] == ["Full AttnRes"]
    ui.expect_no_failure(page)


def test_removing_a_model_updates_compare(new_page, app_url, ui):
    expect = _expect()
    page = new_page()
    ui.open_view(page, app_url, "", "Compare models", prompt=ui.SHORT_PROMPT)
    expect(page.get_by_test_id("stMetricLabel")).to_have_count(3)

    page.get_by_role("button", name="Remove Block AttnRes").click()
    labels = page.get_by_test_id("stMetricLabel")
    expect(labels).to_have_text(["PreNorm: loss on the prompt", "Full AttnRes: loss on the prompt"])
    ui.settled(page)
    assert ui.query_of(page)["models"] == ["PreNorm", "Full AttnRes"]
    assert _chips(page) == ["PreNorm", "Full AttnRes"]
    ui.expect_no_failure(page)


def test_shared_url_reproduces_the_view(new_page, app_url, ui):
    """A link copied from one session opens the same view in a fresh one."""
    expect = _expect()
    first = new_page()
    ui.open_view(
        first, app_url, "", "Compare models", prompt=ui.SHORT_PROMPT, models=["PreNorm", "Block AttnRes"]
    )
    ui.set_prompt(first, OTHER_PROMPT)
    first.get_by_test_id("stButtonGroup").get_by_role("radio", name="Pre-MLP").click()
    expect(first.locator(".gtitle").first).to_have_text(re.compile("pre-MLP"))
    ui.settled(first)
    shared = first.url
    assert ui.query_of(first)["panel"] == ["mlp"], shared
    titles = first.locator(".gtitle").all_text_contents()
    metrics = ui.metric_values(first)
    assert len(metrics) == 2

    second = new_page()
    second.goto(shared)
    expect(second.locator("h1")).to_have_text("Compare models")
    expect(second.locator(".gtitle")).to_have_text(titles)
    expect(second.get_by_test_id("stMetricValue")).to_have_text(metrics)
    expect(ui.prompt_box(second)).to_have_value(OTHER_PROMPT)
    assert _chips(second) == ["PreNorm", "Block AttnRes"]
    ui.expect_no_failure(second)


def _random_checkpoint(directory: Path) -> Path:
    path = directory / "random.pt"
    path.write_bytes(os.urandom(4096))
    return path


class _WritesMarker:
    """Unpickling this runs ``exec``, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('unpickled')",))


def _malicious_checkpoints(directory: Path, marker: Path) -> list[Path]:
    """A torch.save zip and a bare pickle, each with an object that writes ``marker`` when loaded."""
    import torch  # noqa: PLC0415 (only this test needs it here)

    as_zip = directory / "evil_zip.pt"
    torch.save({"model": _WritesMarker(marker), "model_args": {"n_layer": 1}}, as_zip)
    as_pickle = directory / "evil_pickle.pt"
    as_pickle.write_bytes(pickle.dumps({"model": _WritesMarker(marker)}, protocol=2))
    return [as_zip, as_pickle]


def test_bad_uploads_show_an_error_and_leave_the_session_working(new_page, app_url, ui, tmp_path):
    expect = _expect()
    marker = tmp_path / "unpickled.marker"
    page = new_page()
    ui.open_view(page, app_url, "", "Compare models", prompt=ui.SHORT_PROMPT)
    expect(page.get_by_test_id("stMetricValue")).to_have_count(3)
    losses = ui.metric_values(page)

    ui.go_to(page, "Checkpoint inspector", "Checkpoint inspector")
    errors = page.get_by_test_id("stAlertContentError")
    for upload in [_random_checkpoint(tmp_path), *_malicious_checkpoints(tmp_path, marker)]:
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(upload)
        expect(page.get_by_test_id("stFileChipName")).to_have_text(upload.name)
        said = re.escape(f"the uploaded file '{upload.name}'") + " (was refused|could not be loaded)"
        expect(errors).to_have_text([re.compile(said)])  # the user's name, never the server's temp path
        expect(errors).not_to_contain_text("attnres-upload")
        ui.settled(page)
        assert not marker.exists(), f"unpickling {upload.name} ran code"
        expect(page.get_by_test_id("stException")).to_have_count(0)
        if upload.name == "evil_zip.pt":
            ui.screenshot(page, "inspector-refused-upload")
    expect(page.get_by_text("it is now offered on every page")).to_have_count(0)

    ui.go_to(page, "Compare", "Compare models")
    assert _chips(page) == list(ui.SHIPPED)
    expect(page.get_by_test_id("stMetricValue")).to_have_text(losses)
    ui.expect_charts(page, ["Depth-attention weights — all sites", "Stream magnitude RMS(h_l) per site"])
    ui.expect_no_failure(page)


def _assert_not_run(page) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("[...document.scripts].some(s => s.text.includes('__pwned'))") is False


def test_html_in_the_prompt_is_shown_as_text(new_page, app_url, ui):
    expect = _expect()
    page = new_page()
    ui.open_view(page, app_url, "", "Compare models", prompt=ui.SHORT_PROMPT)
    ui.set_prompt(page, XSS_PROMPT)
    expect(page.get_by_text(re.compile(r"^Prompt: \d+ tokens\.$"))).to_have_text(
        f"Prompt: {len(XSS_PROMPT)} tokens."
    )
    expect(ui.prompt_box(page)).to_have_value(XSS_PROMPT)
    expect(page.get_by_test_id("stAlertContentInfo")).to_have_count(3)  # unknown characters, per model
    ui.expect_no_failure(page)
    _assert_not_run(page)
    ui.screenshot(page, "compare-html-prompt")

    ui.go_to(page, "Depth routing", "Depth routing")
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(4)
    ui.expect_no_failure(page)
    _assert_not_run(page)
    reloaded = new_page()
    reloaded.goto(page.url)  # the prompt travels in the URL too
    expect(ui.prompt_box(reloaded)).to_have_value(XSS_PROMPT)
    ui.settled(reloaded)
    _assert_not_run(reloaded)


def test_notices_show_angle_brackets_verbatim(new_page, app_url, ui):
    expect = _expect()
    page = new_page()
    ui.open_view(page, app_url, "depth", "Depth routing", prompt="a<b>c")
    notice = page.get_by_test_id("stAlertContentInfo")
    expect(notice).to_have_count(1)
    assert "&gt;" not in notice.inner_text() and "&lt;" not in notice.inner_text(), notice.inner_text()


def test_two_sessions_keep_their_own_prompt(new_page, app_url, ui):
    expect = _expect()
    alice, bob = new_page(), new_page()
    alice.goto(ui.url_of(app_url, "", prompt=ui.SHORT_PROMPT))
    bob.goto(ui.url_of(app_url, "", prompt=OTHER_PROMPT))
    for page, prompt in ((alice, ui.SHORT_PROMPT), (bob, OTHER_PROMPT)):
        expect(page.get_by_text(re.compile(r"^Prompt: \d+ tokens\.$"))).to_have_text(
            f"Prompt: {len(prompt)} tokens."
        )
        expect(page.get_by_test_id("stMetricValue")).to_have_count(3)
        ui.settled(page)
    alice_losses, bob_losses = ui.metric_values(alice), ui.metric_values(bob)
    assert alice_losses != bob_losses

    ui.set_prompt(alice, OTHER_PROMPT)  # now Alice reads Bob's prompt: same numbers, Bob untouched
    expect(alice.get_by_test_id("stMetricValue")).to_have_text(bob_losses)
    ui.settled(bob)
    expect(ui.prompt_box(bob)).to_have_value(OTHER_PROMPT)
    assert ui.metric_values(bob) == bob_losses
    assert ui.query_of(bob)["prompt"] == [OTHER_PROMPT]

    ui.set_prompt(bob, ui.SHORT_PROMPT)
    expect(bob.get_by_test_id("stMetricValue")).to_have_text(alice_losses)
    expect(ui.prompt_box(alice)).to_have_value(OTHER_PROMPT)
    assert ui.metric_values(alice) == bob_losses
    for page in (alice, bob):
        ui.expect_no_failure(page)
