"""Imports in a real Chromium: a checkpoint saved without a tokenizer is loaded by path and given a
tokenizer in the inspector, a Hugging Face Llama directory is loaded by path, and then every
analysis page runs on both with no exception or error box."""

from __future__ import annotations

import re

import pytest

from tests.toys import tiny_hf_llama, tokenizerless_repro_run

pytestmark = pytest.mark.browser

LOAD_PATH = "Local path (a checkpoint directory, ckpt.pt, or a Hugging Face model directory)"
TOKENIZER_PATH = "Path of a tokenizer.json, meta.pkl or meta.json (or a directory holding one)"
# (nav link, page title, whether it draws charts for an import: an import has no training snapshots)
ANALYSIS_PAGES = [
    ("Compare", "Compare models", True),
    ("Depth routing", "Depth routing", True),
    ("Signal dilution", "Signal dilution", True),
    ("Retrieval", "Retrieval", True),
    ("Attribution & ablation", "Attribution & ablation", True),
    ("Logit lens", "Logit lens", True),
    ("Training dynamics", "Training dynamics", False),
    ("Learn: signal dilution", "Learn: signal dilution", True),
]


def _expect():
    from playwright.sync_api import expect  # noqa: PLC0415 (the conftest skips without playwright)

    return expect


def type_into(page, ui, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter")
    ui.settled(page)


def load_by_path(page, ui, path) -> str:
    """Loads a checkpoint in the inspector; returns the name it is offered under."""
    type_into(page, ui, LOAD_PATH, str(path))
    page.get_by_role("button", name="Load from path").click()
    loaded = page.get_by_test_id("stAlertContentSuccess").filter(has_text="it is now offered on every page")
    _expect()(loaded).to_have_count(1)
    ui.settled(page)
    return re.match(r"Loaded (.+); it is now offered", loaded.inner_text()).group(1)


def choose(page, ui, names: list[str]) -> None:
    """Makes ``names`` the models of the sidebar multiselect (or ``names[0]`` that of its selectbox)."""
    multiselect = page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect")
    chips = multiselect.locator("[data-tag] span[title]")
    if not multiselect.count():
        page.get_by_role("combobox", name="Model", exact=True).click()
        page.get_by_role("option", name=names[0], exact=True).click()
        ui.settled(page)
        return
    for name in names:  # add first: the last chip cannot be removed (the page keeps one model)
        if name in chips.all_inner_texts():
            continue
        if chips.count() == 3:  # at most three models
            _remove_chip(page, ui, chips, next(c for c in chips.all_inner_texts() if c not in names))
        multiselect.locator("input").first.click()  # the middle of the box may be a chip
        page.get_by_role("option", name=name, exact=True).click()
        page.keyboard.press("Escape")
        ui.settled(page)
    while others := [chip for chip in chips.all_inner_texts() if chip not in names]:
        _remove_chip(page, ui, chips, others[0])


def _remove_chip(page, ui, chips, name: str) -> None:
    page.get_by_role("button", name=f"Remove {name}", exact=True).click()
    _expect()(chips.filter(has_text=re.compile(f"^{re.escape(name)}$"))).to_have_count(0)
    ui.settled(page)


def expect_page_works(page, ui, title: str, draws: bool, shot: str) -> None:
    """No exception or error box, no tokenizer warning, and every chart drawn with data."""
    expect = _expect()
    ui.expect_no_failure(page)
    expect(page.get_by_test_id("stAlertContentWarning").filter(has_text="tokenizer")).to_have_count(0)
    if draws:  # every chart drawn with data (an SVG with a trace or a heatmap)
        charts = page.get_by_test_id("stPlotlyChart")
        expect(charts.first.locator("svg.main-svg").first).to_be_visible()
        page.wait_for_function(  # charts draw one after another: wait until the last has its traces
            "() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')]"
            ".every(e => e.querySelectorAll('g.trace, g.hm').length > 0)"
        )
        drawn = charts.evaluate_all("els => els.map(e => e.querySelectorAll('g.trace, g.hm').length)")
        assert drawn and all(drawn), (title, drawn)
    ui.screenshot(page, "import-" + re.sub(r"\W+", "-", shot.lower()).strip("-"))


def walk_every_analysis_page(page, ui, names: list[str]) -> None:
    """Visits each analysis page from the sidebar with the imported ``names`` chosen (one at a time
    on the one-model pages)."""
    for link, title, draws in ANALYSIS_PAGES:
        ui.go_to(page, link, title)
        if page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").count():
            choose(page, ui, names)
            expect_page_works(page, ui, title, draws, title)
            continue
        for i, name in enumerate(names):
            choose(page, ui, [name])
            expect_page_works(page, ui, title, draws, f"{title} {i}")


def test_imports_work_on_every_page(new_page, ui, tmp_path):
    """A tokenizer-less repro run gets its meta.pkl picked in the inspector; a Hugging Face Llama
    directory loads with its tokenizer.json; then every analysis page runs on both.

    On a server of its own: the models it loads are offered to every session of that server."""
    with ui.serve("imports-server") as url:
        _walk_imports(new_page, url, ui, tmp_path)


def _walk_imports(new_page, app_url, ui, tmp_path):
    expect = _expect()
    ckpt, meta, _ = tokenizerless_repro_run(tmp_path)
    tiny_hf_llama(tmp_path / "tiny-llama")
    page = new_page()
    ui.open_view(page, app_url, "inspector", "Checkpoint inspector", prompt=ui.SHORT_PROMPT)
    repro = load_by_path(page, ui, ckpt)
    assert repro == "out-repro-block, step 800, Block AttnRes S2"
    missing = page.get_by_test_id("stAlertContentWarning").filter(has_text="came without a tokenizer")
    expect(missing).to_have_count(1)

    page.get_by_test_id("stRadio").get_by_text("a file on this machine", exact=True).click()
    ui.settled(page)
    type_into(page, ui, TOKENIZER_PATH, str(meta))
    page.get_by_role("button", name="Use this tokenizer").click()
    picked = page.get_by_test_id("stAlertContentSuccess").filter(
        has_text="now reads the prompt with characters"
    )
    expect(picked).to_have_count(1)
    expect(missing).to_have_count(0)
    ui.settled(page)
    llama = load_by_path(page, ui, tmp_path / "tiny-llama")
    assert llama == "tiny-llama, PreNorm"
    expect(page.get_by_test_id("stMetricValue").first).to_have_text("hf-llama")

    ui.go_to(page, "Compare", "Compare models")
    ui.set_prompt(page, ui.SHORT_PROMPT)
    walk_every_analysis_page(page, ui, [repro, llama])
