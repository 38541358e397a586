"""Tokenizers found where each project keeps them, the ids tokenizer, weights-only files, and the
Hugging Face cache listing."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from attnres import CheckpointError, load_model
from attnres.importers.hf_cache import cached_models, hf_cache_dir
from attnres.importers.vocab import tokenizer_from_file
from attnres.tokenizer import IdTokenizer, tokenizer_from_dict
from tests.toys import IMPORT_VOCAB, ours_as_nanogpt, ours_as_repro, tiny_model


def meta_pkl(path, chars: str = IMPORT_VOCAB) -> None:
    itos = dict(enumerate(chars))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        pickle.dumps({"vocab_size": len(itos), "itos": itos, "stoi": {c: i for i, c in itos.items()}})
    )


def nanogpt_run(root, dataset: str | None = "shakespeare_char", vocab: str = IMPORT_VOCAB):
    """nanoGPT's layout: <root>/out-x/ckpt.pt whose config names the dataset of <root>/data/<dataset>/."""
    model = tiny_model("prenorm", None, vocab=vocab, n_layer=1, d_model=16, block_size=32, norm="layernorm",
                       norm_eps=1e-5, activation="gelu", bias=True)  # fmt: skip
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=32, bias=True, vocab_size=len(vocab), dropout=0.0)
    config = {"dataset": dataset, "out_dir": "out-x"} if dataset else {}
    (root / "out-x").mkdir(parents=True)
    torch.save(
        {"model": ours_as_nanogpt(model), "model_args": args, "config": config}, root / "out-x" / "ckpt.pt"
    )
    return root / "out-x" / "ckpt.pt"


def test_nanogpt_meta_pkl_is_found_under_data_dataset_of_the_training_directory(tmp_path):
    ckpt = nanogpt_run(tmp_path)
    meta_pkl(tmp_path / "data" / "shakespeare_char" / "meta.pkl")
    model = load_model(ckpt)
    assert model.tokenizer.kind == "char" and model.tokenizer.vocab == IMPORT_VOCAB
    assert any("data/shakespeare_char/meta.pkl" in note for note in model.import_report.notes)


def test_a_dataset_name_that_is_not_one_folder_is_not_followed(tmp_path):
    ckpt = nanogpt_run(tmp_path / "run", dataset="../elsewhere")
    meta_pkl(tmp_path / "elsewhere" / "meta.pkl")
    meta_pkl(tmp_path / "run" / "data" / "elsewhere" / "meta.pkl")
    assert load_model(ckpt).tokenizer is None


def test_without_any_tokenizer_the_note_says_where_it_looked(tmp_path):
    model = load_model(nanogpt_run(tmp_path))
    assert model.tokenizer is None
    (note,) = [n for n in model.import_report.notes if n.startswith("no tokenizer")]
    assert "data/shakespeare_char/meta.pkl" in note and str(tmp_path / "out-x") in note


def test_repro_meta_json_is_found_through_its_dataset_manifest(tmp_path):
    """The repro's char data prepare.py writes meta.json (itos keys as strings) into the data_dir that
    dataset_manifest.json records beside ckpt.pt."""
    fields = dict(norm="layernorm", norm_eps=1e-5, activation="gelu", depth_norm_eps=1e-8, bias=True)
    original = tiny_model("full", None, vocab=IMPORT_VOCAB, n_layer=1, d_model=16, block_size=64, **fields)
    run, data = tmp_path / "out-repro", tmp_path / "examples" / "nanogpt" / "data" / "shakespeare_char"
    run.mkdir()
    data.mkdir(parents=True)
    torch.save(ours_as_repro(original), run / "ckpt.pt")
    (run / "dataset_manifest.json").write_text(
        json.dumps({"dataset": "shakespeare_char", "data_dir": str(data)})
    )
    itos = {str(i): c for i, c in enumerate(IMPORT_VOCAB)}
    (data / "meta.json").write_text(json.dumps({"vocab_size": len(itos), "itos": itos}))
    model = load_model(run / "ckpt.pt")
    assert model.tokenizer.vocab == IMPORT_VOCAB
    ids = torch.tensor([model.tokenizer.encode("to be")])
    assert torch.equal(ids[0], torch.tensor([IMPORT_VOCAB.index(c) for c in "to be"]))


def test_gpt2_sized_vocabulary_without_tokenizer_names_gpt2(tmp_path):
    vocab = "".join(chr(0x100 + i) for i in range(50257))
    ckpt = nanogpt_run(tmp_path, dataset="openwebtext", vocab=vocab)
    note = [n for n in load_model(ckpt).import_report.notes if n.startswith("no tokenizer")][0]
    assert "GPT-2's BPE" in note


@pytest.mark.parametrize(
    ("mode", "text", "ids", "unknown"),
    [
        ("numbers", "3 1, 4\n39", [3, 1, 4, 39], ()),
        ("numbers", "3 40 x -1", [3, 0, 0, 0], ("-1", "40", "x")),
        ("bytes", "a&", [97, 38], ()),
        ("bytes", "aé", [97, 0, 0], ("é",)),  # é is two UTF-8 bytes, both above 99
    ],
)
def test_ids_tokenizer_reads_numbers_or_bytes(mode, text, ids, unknown):
    tokenizer = IdTokenizer(40 if mode == "numbers" else 100, mode)
    report = tokenizer.encode_report(text)
    assert report.ids == ids and report.unknown == unknown
    again = tokenizer_from_dict(tokenizer.to_dict())
    assert again.encode(text) == ids and len(again) == len(tokenizer)


def test_ids_tokenizer_display_strings():
    assert IdTokenizer(300, "bytes").token_strings(list(b"hi\n")) == ["h", "i", "\\x0a"]
    assert IdTokenizer(300, "bytes").decode(list("Zoë".encode())) == "Zoë"
    assert IdTokenizer(10).token_strings([7, 0]) == ["7", "0"] and IdTokenizer(10).decode([7, 0]) == "7 0"


def test_tokenizer_from_file_reads_each_kind_and_refuses_others(tmp_path):
    meta_pkl(tmp_path / "meta.pkl")
    assert tokenizer_from_file(tmp_path / "meta.pkl").vocab == IMPORT_VOCAB
    assert tokenizer_from_file(tmp_path).vocab == IMPORT_VOCAB  # a directory holding one
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a tokenizer.json, meta.pkl or meta.json"):
        tokenizer_from_file(tmp_path / "notes.txt")
    (tmp_path / "bad.json").write_text('{"model": 1}')
    with pytest.raises(CheckpointError, match="bad.json is not a valid tokenizer.json"):
        tokenizer_from_file(tmp_path / "bad.json")


def test_a_file_of_weights_alone_is_told_to_bring_its_config(tmp_path):
    model = tiny_model("prenorm", None, vocab="ab", n_layer=1, d_model=8, block_size=8)
    torch.save(model.state_dict(), tmp_path / "weights.bin")
    with pytest.raises(
        CheckpointError, match="holds only weights.*config.json saved beside its weights"
    ) as caught:
        load_model(tmp_path / "weights.bin")
    assert "nanoGPT" not in str(caught.value)
    from safetensors.torch import save_file

    save_file({"wte.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="holds only weights"):
        load_model(tmp_path / "model.safetensors")


def _cached_repo(hub, repo_id: str, commits: dict[str, str], main: str | None) -> None:
    """A cache entry as huggingface_hub writes it: snapshots/<commit>/ and refs/main."""
    folder = hub / ("models--" + repo_id.replace("/", "--"))
    for commit, model_type in commits.items():
        (folder / "snapshots" / commit).mkdir(parents=True)
        (folder / "snapshots" / commit / "config.json").write_text(json.dumps({"model_type": model_type}))
        (folder / "snapshots" / commit / "model.safetensors").write_bytes(b"\0" * 8)
    if main:
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text(main)


def test_cache_listing_finds_models_with_config_and_weights_at_main(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    _cached_repo(hub, "org/b-model", {"1" * 40: "gpt2", "2" * 40: "llama"}, main="1" * 40)
    _cached_repo(hub, "org/a-model", {"3" * 40: "qwen2"}, main=None)
    (hub / "models--org--no-config" / "snapshots" / ("4" * 40)).mkdir(parents=True)
    listed = cached_models(hub)
    assert [(m.repo_id, m.model_type, m.path.name) for m in listed] == [
        ("org/a-model", "qwen2", "3" * 40),
        ("org/b-model", "gpt2", "1" * 40),
    ]
    assert cached_models(tmp_path / "absent") == []
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert hf_cache_dir() == hub
