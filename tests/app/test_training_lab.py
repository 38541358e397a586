"""Training lab page: train the tiny twins, watch them move, stop them, save one into runs/."""

from __future__ import annotations

import shutil
import time

import pytest

from attnres import load_model
from attnres.lab import departure

PAGE = "views/training_lab.py"


@pytest.fixture
def lab(ui):
    """The lab page on the CPU with the tiny preset; any run it starts is stopped at the end."""
    at = ui.open_app(PAGE, lab_device="cpu")
    yield at
    run = at.session_state["lab_run"] if "lab_run" in at.session_state else None
    if run is not None:
        run.stop()


def test_page_without_a_run_offers_the_presets(ui, lab):
    ui.no_failures(lab)
    assert [t.value for t in lab.title] == ["Training lab"]
    assert lab.selectbox(key="lab_preset").value == "tiny (CPU, ~1 min)"
    assert lab.button(key="lab_stop").disabled and not ui.charts(lab)


def test_train_watch_and_stop(ui, lab):
    lab.button(key="lab_train").click().run()
    ui.no_failures(lab)
    run = lab.session_state["lab_run"]
    deadline = time.time() + 40
    while run.state().step < 10 and time.time() < deadline:
        time.sleep(0.5)
    lab.run()
    ui.no_failures(lab)
    assert run.running and lab.button(key="lab_train").disabled, "one run at a time"
    loss = ui.chart_titled(lab, "Training loss")
    assert {d["name"] for d in loss["data"]} >= {"PreNorm train", "Block AttnRes (S=2) train"}
    heatmap = ui.chart_titled(lab, "Depth-attention weights")["data"][0]
    z = ui.array(heatmap["z"])
    assert z.shape[0] == 9 and departure(z) > 0.01, "the weights have left uniform"
    assert len(ui.chart_titled(lab, "Stream magnitude")["data"]) == 2
    lab.button(key="lab_stop").click().run()
    ui.no_failures(lab)
    assert not run.running and run.state().status == "stopped"
    assert any("Stopped by the user" in box.value for box in lab.info)
    assert lab.button(key="lab_train").disabled is False


def test_save_sanitises_the_name_and_offers_the_model(ui, lab):
    lab.button(key="lab_train").click().run()
    lab.button(key="lab_stop").click().run()
    target = ui.REPO_ROOT / "runs" / "lab-test_.._etc"
    shutil.rmtree(target, ignore_errors=True)
    try:
        lab.selectbox(key="lab_save_which").set_value("attnres")
        lab.text_input(key="lab_save_name").input("lab-test/../etc").run()
        lab.button(key="lab_save").click().run()
        ui.no_failures(lab)
        assert load_model(target).config.residual == "block" and (target / "README.md").is_file()
        assert any(box.value.startswith("Saved Block AttnRes") for box in lab.success)
        assert "lab-lab-test_.._etc" in lab.session_state["user_models"]
        lab.button(key="lab_save").click().run()
        assert any("already exists" in box.value for box in lab.warning)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_llama_style_block_is_offered_for_both_twins(ui, lab):
    lab.selectbox(key="lab_block").set_value("Llama-style (RoPE, SwiGLU)").run()
    lab.button(key="lab_train").click().run()
    ui.no_failures(lab)
    run = lab.session_state["lab_run"]
    lab.button(key="lab_stop").click().run()
    ui.no_failures(lab)
    assert run.block == "llama" and all(m.config.position == "rope" for m in run.models.values())
