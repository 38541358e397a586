"""Clear messages instead of tracebacks: GPU out of memory, bad uploads, hostile and empty prompts."""

from __future__ import annotations

import json

import pytest
import torch

import app.common as common
from app.compute import run_with_oom_fallback

SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def test_oom_fallback_empties_cache_and_reruns_on_cpu(ui, monkeypatch):
    emptied, calls = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))

    def work(device):
        calls.append(device)
        if device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 42

    assert run_with_oom_fallback(work, "cuda") == (42, "cpu")
    assert calls == ["cuda", "cpu"] and emptied == [True]


def test_other_errors_are_not_swallowed(ui):
    def work(device):
        raise ValueError("bad site")

    with pytest.raises(ValueError):
        run_with_oom_fallback(work, "cuda")


def test_oom_on_the_page_reruns_on_cpu_and_says_so(ui, monkeypatch):
    real_get_model = common.get_model

    def get_model(entry, device="cpu", dtype="fp32"):
        if device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_get_model(entry, "cpu", "fp32")

    monkeypatch.setattr(common, "available_devices", lambda: ["cuda", "cpu"])
    monkeypatch.setattr(common, "get_model", get_model)
    at = ui.open_app(device="cuda")
    ui.no_failures(at)
    assert at.selectbox(key="device").value == "cuda"
    assert any("ran out of memory" in w.value and "CPU" in w.value for w in at.warning)
    assert ui.charts(at), "the page still shows its ui.charts, computed on the CPU"


def test_bad_upload_shows_the_checkpoint_error_and_keeps_models(ui):
    at = ui.open_app("views/inspector.py")
    snapshot = str(ui.REPO_ROOT / "sample_models" / "shakespeare-full" / "snapshots" / "step-000250")
    at.text_input(key="load_path").input(snapshot)
    at.button(key="load_path_button").click().run()
    ui.no_failures(at)
    name = "shakespeare-full, step 250, Full AttnRes"
    assert name in at.session_state["user_models"]
    at.file_uploader(key="upload").set_value(
        ("../../etc/passwd.pt", b"not a checkpoint at all", "application/octet-stream")
    )
    at.run()
    assert not at.exception
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "passwd" not in at.error[0].value or "upload" in at.error[0].value
    assert name in at.session_state["user_models"], "previously loaded models keep working"
    at.switch_page("views/compare.py").run()
    at.multiselect(key="models").set_value(["PreNorm", name])
    at.run()
    ui.no_failures(at)
    assert [m.label for m in at.metric][1] == f"{name}: loss on the prompt"


def test_archive_upload_is_refused_with_a_sentence(ui):
    at = ui.open_app("views/inspector.py")
    at.file_uploader(key="upload").set_value(("model.zip", b"PK\x03\x04", "application/zip")).run()
    assert not at.exception
    assert "archive" in at.error[0].value


def test_bad_local_path_is_an_error_message(ui):
    at = ui.open_app("views/inspector.py")
    at.text_input(key="load_path").input("/no/such/checkpoint").run()
    at.button(key="load_path_button").click().run()
    assert not at.exception
    assert len(at.error) == 1


@pytest.mark.parametrize("page", ["views/compare.py", "views/depth.py", "views/lens.py"])
def test_script_prompt_is_shown_as_text(ui, page):
    at = ui.open_app(page, prompt=SCRIPT)
    assert not at.exception
    assert at.text_area(key="prompt").value == SCRIPT
    for element in [*at.markdown, *at.info, *at.warning, *at.caption]:
        assert "<script" not in element.value and "<img" not in element.value
    for fig in ui.charts(at):
        assert "<script" not in json.dumps(fig) and "<img" not in json.dumps(fig)


def test_unknown_characters_are_a_notice(ui):
    at = ui.open_app(prompt="To be — or not ✓")
    ui.no_failures(at)
    assert any("outside the vocabulary" in i.value for i in at.info)


def test_empty_prompt_is_a_warning_not_an_error(ui, app):
    app.text_area(key="prompt").input("   ").run()
    assert not app.exception
    assert any("prompt is empty" in w.value for w in app.warning)
