"""Imports are usable on every page: a tokenizer-less checkpoint gets a tokenizer the user picks, an
imported Llama runs everywhere, a refused load shows no other model's report, loaded models get
names a person can tell apart, a bare HF weights file gets the right sentence, and the Hugging Face
cache is offered offline."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from app.tokenizer_pick import FROM_PATH, FROM_UPLOAD, MISSING, NUMBERS
from tests.toys import IMPORT_VOCAB, byte_level_bpe, ours_as_repro, tiny_hf_llama, tokenizerless_repro_run

ANALYSIS_PAGES = ["compare", "depth", "dilution", "retrieval", "attribution", "lens", "dynamics", "learn"]
PROMPT = "To be, or not to be"


@pytest.fixture(scope="module")
def repro_run(tmp_path_factory):
    """(ckpt.pt, meta.pkl, original model) of a tokenizer-less Block AttnRes repro run."""
    return tokenizerless_repro_run(tmp_path_factory.mktemp("runs"))


def load_path(at, path) -> None:
    at.text_input(key="load_path").input(str(path))
    at.button(key="load_path_button").click().run()


def loss_metric(at, name: str) -> float:
    value = next(m.value for m in at.metric if m.label == f"{name}: loss on the prompt")
    return float(value.split()[0])


def reference_loss(model, ids: list[int]) -> float:
    """Mean next-token cross-entropy of the original (never exported) model, by F.cross_entropy."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return float(F.cross_entropy(logits[:-1], torch.tensor(ids[1:])))


def visit_every_analysis_page(ui, at, name: str) -> None:
    for page in ANALYSIS_PAGES:
        at.session_state["models"], at.session_state["model"] = [name], name
        at.switch_page(f"views/{page}.py").run()
        ui.no_failures(at)
        assert not [w.value for w in at.warning if "tokenizer" in w.value], page
        if page != "dynamics":  # an import has no training snapshots: the page says so
            assert ui.charts(at), f"{page} shows nothing for {name}"


def test_tokenizerless_import_gets_a_picked_meta_pkl_and_every_page_runs(ui, repro_run):
    ckpt, meta, original = repro_run
    at = ui.open_app("views/inspector.py", prompt=PROMPT)
    load_path(at, ckpt)
    ui.no_failures(at)
    (name,) = at.session_state["user_models"]
    assert [w.value for w in at.warning if w.value == MISSING], "one sentence says to pick a tokenizer"
    at.session_state["models"] = [name]
    at.switch_page("views/compare.py").run()
    ui.no_failures(at)
    assert any("no tokenizer" in w.value and "Checkpoint inspector" in w.value for w in at.warning)

    at.switch_page("views/inspector.py").run()
    at.radio(key="tokenizer_source").set_value(FROM_PATH).run()
    at.text_input(key="tokenizer_path").input(str(meta))
    at.button(key="tokenizer_apply").click().run()
    ui.no_failures(at)
    assert not [w.value for w in at.warning if w.value == MISSING]
    assert any("now reads the prompt with characters (40 tokens)" in s.value for s in at.success)
    visit_every_analysis_page(ui, at, name)
    at.switch_page("views/compare.py").run()
    expected = reference_loss(original, [IMPORT_VOCAB.index(c) for c in PROMPT])
    assert loss_metric(at, name) == pytest.approx(expected, abs=1e-3)


def test_ids_typed_as_numbers_are_the_model_input(ui, repro_run):
    ckpt, _, original = repro_run
    at = ui.open_app("views/inspector.py", prompt="3 1 4 1 5 9 2 6")
    load_path(at, ckpt)
    (name,) = at.session_state["user_models"]
    at.radio(key="tokenizer_source").set_value(NUMBERS).run()
    at.button(key="tokenizer_apply").click().run()
    ui.no_failures(at)
    assert at.session_state["user_models"][name].tokenizer_source == NUMBERS
    at.session_state["models"] = [name]
    at.switch_page("views/compare.py").run()
    ui.no_failures(at)
    assert loss_metric(at, name) == pytest.approx(
        reference_loss(original, [3, 1, 4, 1, 5, 9, 2, 6]), abs=1e-3
    )


def test_a_refused_load_shows_no_report_of_another_model(ui, repro_run, tmp_path):
    at = ui.open_app("views/inspector.py")
    assert any(m.label == "Format" for m in at.metric)
    load_path(at, tmp_path / "no-such-run" / "ckpt.pt")
    assert not at.exception
    assert len(at.error) == 1 and "does not exist" in at.error[0].value
    assert not at.metric, "no report below a refusal"
    assert not [s.value for s in at.success], "no green box after a refusal"
    assert any("Nothing was loaded" in c.value for c in at.caption)

    at.selectbox(key="inspect").set_value("Full AttnRes").run()  # picking a model shows its report
    ui.no_failures(at)
    assert {m.label: m.value for m in at.metric}["Format"] == "attnres-lens"

    load_path(at, repro_run[0])  # a later success shows the new model, not the old refusal
    ui.no_failures(at)
    assert at.selectbox(key="inspect").value.startswith("out-repro-block")
    assert {m.label: m.value for m in at.metric}["Format"] == "nanogpt-attnres-repro"


def test_loaded_models_are_named_by_run_step_and_rule(ui, tmp_path):
    """Two runs that both save ckpt.pt, and a snapshot of a shipped run, get names that say which is which."""
    block, _, _ = tokenizerless_repro_run(tmp_path / "a", "block")
    full, _, _ = tokenizerless_repro_run(tmp_path / "b", "full")
    snapshot = ui.REPO_ROOT / "sample_models" / "shakespeare-full" / "snapshots" / "step-000250"
    at = ui.open_app("views/inspector.py")
    for path in (block, full, snapshot, full):
        load_path(at, path)
        ui.no_failures(at)
    assert list(at.session_state["user_models"]) == [
        "out-repro-block, step 800, Block AttnRes S2",
        "out-repro-full, step 800, Full AttnRes",
        "shakespeare-full, step 250, Full AttnRes",
        "out-repro-full, step 800, Full AttnRes-2",
    ]


def test_uploaded_hf_weights_file_is_told_to_bring_its_config(ui, repro_run, tmp_path):
    _, _, original = repro_run
    bare = tmp_path / "pytorch_model.bin"
    torch.save({k: v for k, v in ours_as_repro(original)["model"].items()}, bare)
    at = ui.open_app("views/inspector.py")
    at.file_uploader(key="upload").set_value(
        ("pytorch_model.bin", bare.read_bytes(), "application/octet-stream")
    )
    at.run()
    assert not at.exception
    (error,) = [e.value.replace("\\", "") for e in at.error]
    assert "the uploaded file 'pytorch_model.bin' holds only weights" in error
    assert "config.json" in error and "nanoGPT" not in error
    assert not at.metric


def test_models_in_the_hugging_face_cache_load_with_one_click(ui, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    repo = tmp_path / "hub" / "models--tiny-org--tiny-gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    bpe = byte_level_bpe(PROMPT * 4)
    bpe.save(str(snapshot / "tokenizer.json"))
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=16, n_positions=64, vocab_size=bpe.get_vocab_size()
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(snapshot)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))  # HF_HUB_CACHE wins over HF_HOME
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))

    at = ui.open_app("views/inspector.py", prompt=PROMPT)
    assert any(t.value == "tiny-org/tiny-gpt2 (gpt2)" for t in at.text)
    at.button(key="hf_cache_tiny-org/tiny-gpt2").click().run()
    ui.no_failures(at)
    (name,) = at.session_state["user_models"]
    assert name == "tiny-org/tiny-gpt2, PreNorm"
    at.session_state["models"] = [name]
    at.switch_page("views/compare.py").run()
    ui.no_failures(at)
    assert loss_metric(at, name) == pytest.approx(hf_loss(hf, bpe.encode(PROMPT).ids), abs=1e-3)


def hf_loss(hf, ids: list[int]) -> float:
    """Mean next-token cross-entropy of a transformers model, by F.cross_entropy on its own logits."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0]
    return float(F.cross_entropy(logits[:-1], torch.tensor(ids[1:])))


def test_every_analysis_page_runs_on_an_imported_llama(ui, tmp_path):
    """A Hugging Face Llama directory (grouped-query attention, separate head) with its tokenizer.json:
    every analysis page runs on it, and its loss is transformers' own."""
    pytest.importorskip("transformers")
    hf, tokenizer = tiny_hf_llama(tmp_path / "tiny-llama")
    at = ui.open_app("views/inspector.py", prompt=PROMPT)
    load_path(at, tmp_path / "tiny-llama")
    ui.no_failures(at)
    (name,) = at.session_state["user_models"]
    assert name == "tiny-llama, PreNorm"
    assert {m.label: m.value for m in at.metric}["Format"] == "hf-llama"
    visit_every_analysis_page(ui, at, name)
    at.switch_page("views/compare.py").run()
    assert loss_metric(at, name) == pytest.approx(hf_loss(hf, tokenizer.encode(PROMPT).ids), abs=1e-3)


def test_an_uploaded_tokenizer_json_is_picked(ui, repro_run, tmp_path):
    from tokenizers import Tokenizer, models

    ckpt, _, original = repro_run
    chars = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(IMPORT_VOCAB)}, merges=[]))
    at = ui.open_app("views/inspector.py", prompt=PROMPT)
    load_path(at, ckpt)
    (name,) = at.session_state["user_models"]
    at.radio(key="tokenizer_source").set_value(FROM_UPLOAD).run()
    at.file_uploader(key="tokenizer_upload").set_value(
        ("tokenizer.json", chars.to_str().encode(), "application/json")
    )
    at.run()
    at.button(key="tokenizer_apply").click().run()
    ui.no_failures(at)
    assert any("now reads the prompt with a tokenizer.json (40 tokens)" in s.value for s in at.success)
    assert at.session_state["user_models"][name].tokenizer_source == "the uploaded file 'tokenizer.json'"
    at.session_state["models"] = [name]
    at.switch_page("views/compare.py").run()
    ui.no_failures(at)
    expected = reference_loss(original, [IMPORT_VOCAB.index(c) for c in PROMPT])
    assert loss_metric(at, name) == pytest.approx(expected, abs=1e-3)


def test_a_picked_tokenizer_larger_than_the_vocabulary_is_refused(ui, repro_run, tmp_path):
    ckpt, _, _ = repro_run
    itos = dict(enumerate(IMPORT_VOCAB + "0123456789"))
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": len(itos), "itos": itos}))
    at = ui.open_app("views/inspector.py")
    load_path(at, ckpt)
    at.radio(key="tokenizer_source").set_value(FROM_PATH).run()
    at.text_input(key="tokenizer_path").input(str(tmp_path / "meta.pkl"))
    at.button(key="tokenizer_apply").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["That tokenizer has 50 tokens but this model's vocabulary has 40."]
    assert [w.value for w in at.warning if w.value == MISSING], "still without a tokenizer"
