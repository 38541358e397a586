"""Checkpoint format (DESIGN.md §2, §3): exact round trips, and one actionable sentence for each
way a checkpoint can be broken."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnres import CheckpointError, Model, load_model, save_model
from attnres.checkpoint import run_snapshots

pytestmark = pytest.mark.usefixtures("one_thread")
RULES = [("prenorm", None), ("full", None), ("block", 3)]


@pytest.fixture
def saved(tmp_path, make_model):
    """A saved tiny Block model (random depth parameters) and its directory."""
    model = make_model("block", 3, n_layer=2, d_model=16)
    return model, save_model(model, tmp_path / "ckpt", card="# tiny\n")


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del config[key]
    path.write_text(json.dumps(config))


def load_error(path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(path, **kw)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and message.endswith(".")
    return message


# ---- exact round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r[0])
@pytest.mark.parametrize("tie", [True, False])
def test_save_then_load_reproduces_logits_bit_for_bit(tmp_path, make_model, make_tokens, rule, tie):
    model, tokens = make_model(*rule, n_layer=2, tie_embeddings=tie), make_tokens()
    loaded = load_model(save_model(model, tmp_path / "ckpt"))
    assert loaded.config == model.config and not loaded.training
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)
    assert (loaded.lm_head.weight is loaded.wte.weight) == tie
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.tokenizer.vocab == model.tokenizer.vocab


def test_saved_files_follow_the_format(saved):
    model, directory = saved
    config = json.loads((directory / "config.json").read_text())
    assert config["format"] == "attnres-lens" and config["format_version"] == 1
    assert config["residual"] == "block" and config["attnres_block_size"] == 3
    assert config["norm_eps"] == 1e-6 and config["tokenizer"] == {
        "type": "char",
        "vocab": model.tokenizer.vocab,
    }
    names = load_file(directory / "model.safetensors").keys()
    assert {"blocks.0.attn_res.query", "blocks.1.mlp_res.norm.weight", "out_res.query"} <= names
    assert "lm_head.weight" not in names  # tied to wte.weight
    assert (directory / "README.md").read_text() == "# tiny\n"


def test_fp16_weights_load_as_fp32(tmp_path, make_model):
    model = make_model("full", n_layer=2, d_model=16)
    directory = save_model(model, tmp_path / "half", dtype=torch.float16)
    assert load_file(directory / "model.safetensors")["wte.weight"].dtype == torch.float16
    loaded = load_model(directory)
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32, name
        assert torch.equal(tensor, model.state_dict()[name].half().float()), name


@pytest.mark.parametrize("inside", ["config.json", "model.safetensors", "README.md"])
def test_load_model_accepts_a_file_inside_the_directory(saved, make_tokens, inside):
    model, directory = saved
    tokens = make_tokens()
    assert torch.equal(load_model(directory / inside)(tokens).logits, model(tokens).logits)


# ---- one sentence for each broken checkpoint -------------------------------------------------------
def test_missing_directory(tmp_path):
    assert str(tmp_path / "nowhere") in load_error(tmp_path / "nowhere")


def test_missing_config(saved):
    _, directory = saved
    (directory / "config.json").unlink()
    message = load_error(directory)
    assert str(directory) in message and "config.json" in message


def test_missing_weights(saved):
    _, directory = saved
    (directory / "model.safetensors").unlink()
    assert str(directory / "model.safetensors") in load_error(directory)


def test_truncated_weights(saved):
    _, directory = saved
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert str(path) in load_error(directory)


@pytest.mark.parametrize(
    "change", [{"d_model": 32, "n_head": 2}, {"vocab_size": 50}, {"n_layer": 3}, {"residual": "prenorm"}]
)
def test_config_that_disagrees_with_the_weights(saved, change):
    _, directory = saved
    edit_config(directory, **change)
    assert str(directory / "model.safetensors") in load_error(directory)


def test_unknown_format_version(saved):
    _, directory = saved
    edit_config(directory, format_version=2)
    message = load_error(directory)
    assert str(directory / "config.json") in message and "format_version" in message


def test_block_config_without_block_size(saved):
    _, directory = saved
    edit_config(directory, attnres_block_size=None)
    message = load_error(directory)
    assert str(directory / "config.json") in message and "attnres_block_size" in message


def test_other_rules_ignore_a_missing_block_size(tmp_path, make_model):
    directory = save_model(make_model("full", n_layer=2, d_model=16), tmp_path / "full")
    edit_config(directory, attnres_block_size=None)
    assert load_model(directory).config.residual == "full"


def test_nonfinite_weights_refused_unless_allowed(saved, make_tokens):
    _, directory = saved
    path = directory / "model.safetensors"
    tensors = load_file(path)
    tensors["blocks.1.mlp.c_fc.weight"][0, 0] = float("nan")
    tensors["out_res.query"][3] = float("inf")
    save_file(tensors, path)
    message = load_error(directory)
    assert str(path) in message and ("blocks.1.mlp.c_fc.weight" in message or "out_res.query" in message)
    damaged = load_model(directory, allow_nonfinite=True)
    assert torch.isnan(damaged.blocks[1].mlp.c_fc.weight[0, 0]) and torch.isinf(damaged.out_res.query[3])
    assert torch.isnan(damaged(make_tokens()).logits).any()


def test_empty_model_has_the_shapes_and_loading_skips_initialisation():
    """empty_model: meta tensors with Model's names and shapes. Loading a checkpoint runs no
    initialiser (on meta they would import torch._dynamo, ~2 s, in a fresh process)."""
    import subprocess
    import sys
    from pathlib import Path

    from attnres.model import empty_model

    root = Path(__file__).resolve().parents[2]
    config = load_model(root / "sample_models" / "shakespeare-block").config
    empty, real = empty_model(config), Model(config)
    assert all(p.is_meta for p in empty.parameters())
    assert {k: v.shape for k, v in empty.state_dict().items()} == {
        k: v.shape for k, v in real.state_dict().items()
    }
    code = (
        "import sys; from attnres import load_model; "
        "m = load_model('sample_models/shakespeare-full'); "
        "assert not any(p.is_meta for p in m.parameters()); "
        "print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_run_snapshots_lists_step_folders_with_a_config_then_the_final_model(tmp_path):
    run = tmp_path / "run"
    for name in ("step-000000", "step-000250", "step-001500", "step-000900", "latest", "step-x"):
        (run / "snapshots" / name).mkdir(parents=True)
    for name in ("step-000000", "step-000250", "step-001500", "latest", "step-x"):
        (run / "snapshots" / name / "config.json").write_text("{}")  # step-000900 has none
    folder = str(run / "snapshots")
    expected = [(0, f"{folder}/step-000000"), (250, f"{folder}/step-000250"), (1500, f"{folder}/step-001500")]
    assert list(run_snapshots(run)) == [*expected, (1501, str(run))]
    assert list(run_snapshots(run, final_step=5000)) == [*expected, (5000, str(run))]
    assert run_snapshots(tmp_path / "no-snapshots") == ()
