"""The Compare page's numbers: one forward pass per model and prompt, and progress with Stop only for
slow models (never for the shipped samples)."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from app import common, models, progressive
from attnres.device import select_device


def _forwards(model, calls: list):
    return model.register_forward_hook(lambda *_: calls.append(1))


def test_the_compare_probes_share_one_forward_per_model():
    """Loss, depth weights, stream norms and retrieval of one model on one prompt run it once."""
    entry = next(iter(models.shipped_entries().values()))
    model = models.get_model(entry, "cpu", "fp32")
    calls: list = []
    hook = _forwards(model, calls)
    try:
        text = f"To be, or not {time.time_ns()}"  # a prompt nothing has cached
        for name in common.COMPARE_PROBES:
            common.compute_probe(name, entry, "cpu", "fp32", text)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_the_shipped_samples_are_not_slow():
    """Even at their whole context, the samples compute without a progress bar."""
    for entry in models.shipped_entries().values():
        model = models.get_model(entry)
        assert not progressive.is_slow(model, model.config.block_size, "cpu"), entry.name


def _compare(ui, prompt: str) -> AppTest:
    at = AppTest.from_file(str(ui.REPO_ROOT / "app" / "streamlit_app.py"), default_timeout=300)
    at.query_params["prompt"] = prompt
    return at


@pytest.fixture
def everything_slow(monkeypatch):
    monkeypatch.setattr(progressive, "SLOW_WORK", 0)


def test_slow_models_compute_under_progress_and_can_be_stopped(ui, everything_slow):
    prompt = f"To be, or not {time.time_ns()}"
    entries = list(models.shipped_entries().values())
    key = ("prefetch", "Compare", tuple(e.key for e in entries), select_device().type, "fp32", prompt)
    at = _compare(ui, prompt)
    at.session_state[progressive.STOPPED] = {key}  # as the Stop button leaves it
    at.run()
    ui.no_failures(at)
    assert any("was stopped" in i.value for i in at.info) and not ui.charts(at)
    at.button(key=progressive.widget_key("continue", key)).click().run()
    ui.no_failures(at)
    assert progressive.result(key) is True
    assert [len([d for d in f["data"] if d["type"] == "heatmap"]) for f in ui.charts(at)][:1] == [3]
    assert len(ui.charts(at)) == 2 and len([m for m in at.metric if "loss" in m.label]) == 3
