"""Training lab: a live PreNorm / AttnRes twin run on the tiny preset (CPU, a few seconds)."""

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

import probes
from attnres import load_model
from attnres.data import BatchSampler, load_corpus
from attnres.lab import PRESETS, PROBE_TEXT, TWINS, LabError, Preset, TwinRun, departure
from attnres.lab_limits import GIB, check_fits

TINY = replace(PRESETS["tiny (CPU, ~1 min)"], probe_every=2, eval_every=5)
HUGE = Preset("huge", n_layer=96, n_head=64, d_model=8192, block_size=4096, batch_size=64,
              steps=10, max_seconds=10, target="cuda")  # fmt: skip


def wait_for(run: TwinRun, step: int, timeout: float = 90.0):
    """The run's state once it has taken ``step`` steps (fails after ``timeout`` seconds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = run.state()
        if state.step >= step or state.status != "running":
            return state
        time.sleep(0.1)
    raise AssertionError(f"no step {step} within {timeout} s: {run.state().step} steps")


@pytest.fixture(scope="module")
def live():
    """A tiny Block AttnRes (S=2) twin run, stopped at the end of the module."""
    run = TwinRun(TINY, rule="block", attnres_block_size=2, device="cpu", max_steps=10_000, max_seconds=120)
    yield run
    run.stop()


def test_state_starts_uniform_then_moves(live):
    first = live.state()
    assert first.status == "running" and first.names["attnres"] == "Block AttnRes (S=2)"
    assert first.depth_weights.shape == (9, 5)  # L+1 = 9 sites; readout reads emb, B1..B4
    later = wait_for(live, 24)
    assert later.step > first.step >= 0
    assert later.probe_step >= 20
    assert later.departure > 0.01, "the AttnRes depth weights should leave uniform within 20 steps"
    for twin in TWINS:
        assert len(later.losses[twin]) == later.step
        assert all(np.isfinite(later.losses[twin]))
        assert [s for s, _ in later.val_losses[twin]][:4] == [5, 10, 15, 20]
        assert later.stream_rms[twin].shape == (9,)
    assert later.losses["prenorm"][-1] < later.losses["prenorm"][0] - 0.5, "the twins should learn"
    assert later.tokens == later.step * 16 * 64 and later.tokens_per_s > 0
    rows = later.log_rows("attnres")
    val_at_5 = later.val_losses["attnres"][0][1]
    assert rows[4] == {"step": 5, "train_loss": later.losses["attnres"][4], "val_loss": val_at_5}


def test_live_matrices_equal_the_probes_on_the_copies(live):
    wait_for(live, 4)
    step, copies = live.probe_models()
    state = live.state()
    if state.probe_step != step:  # a probe landed in between; take the pair again
        step, copies = live.probe_models()
        state = live.state()
    assert set(copies) == set(TWINS) and not copies["attnres"].training
    dw = probes.depth_weights(copies["attnres"], PROBE_TEXT)
    np.testing.assert_allclose(dw.mean, state.depth_weights, atol=1e-5)
    assert dw.sources == state.depth_sources
    norms = probes.stream_norms(copies["prenorm"], PROBE_TEXT)
    np.testing.assert_allclose(norms.input_rms_mean, state.stream_rms["prenorm"], rtol=1e-4)


def test_save_writes_a_loadable_checkpoint_with_a_card(live, tmp_path):
    wait_for(live, 6)
    path = live.save("attnres", tmp_path / "block-twin")
    model = load_model(path)
    assert (model.config.residual, model.config.attnres_block_size, model.config.n_layer) == ("block", 2, 4)
    assert model.blocks[1].attn_res.query.abs().sum() > 0, "the saved twin is the trained one"
    card = (path / "README.md").read_text()
    assert "Block AttnRes (S = 2 sublayers per block)" in card and "| final validation loss |" in card
    assert "TwinRun(PRESETS['tiny (CPU, ~1 min)']" in card
    with pytest.raises(LabError, match="'prenorm' or 'attnres'"):
        live.save("both", tmp_path / "x")


def test_stop_ends_the_thread_within_a_step(live):
    wait_for(live, 2)
    started = time.time()
    assert live.stop()
    assert time.time() - started < 5.0
    state = live.state()
    assert not live.running and state.status == "stopped" and "Stopped by the user" in state.message
    time.sleep(0.3)
    assert live.state().step == state.step, "nothing trains after stop()"


def test_twins_share_initial_weights_and_every_batch():
    run = TwinRun(TINY, rule="full", device="cpu", max_steps=2, start=False)
    prenorm, attnres = (run.models[t].state_dict() for t in TWINS)
    assert set(prenorm) < set(attnres)
    assert all(torch.equal(prenorm[name], attnres[name]) for name in prenorm), "same seed, same init"
    seen = {twin: [] for twin in TWINS}
    for twin in TWINS:
        run.models[twin].register_forward_pre_hook(lambda m, a, twin=twin: seen[twin].append(a[0].clone()))
    run.start()
    assert run.wait(30).status == "finished"
    batches = {twin: [x for x in seen[twin] if x.shape == (16, 64)] for twin in TWINS}
    assert len(batches["prenorm"]) == len(batches["attnres"]) == 2
    expected = BatchSampler(load_corpus().train, 64, 16, seed=1337)
    for step in range(2):
        x = expected.next()[0]  # the same windows `python -m attnres.train --seed 1337` draws
        assert torch.equal(batches["prenorm"][step], x) and torch.equal(batches["attnres"][step], x)


def test_too_big_preset_is_refused_with_a_sentence():
    with pytest.raises(LabError, match=r"The preset 'huge' needs about [\d.]+ GiB .* pick a smaller preset"):
        TwinRun(HUGE, device="cpu")
    with pytest.raises(LabError, match="only 1.0 GiB free"):
        check_fits(PRESETS["deeper (GPU)"], torch.device("cpu"), available=GIB)
    assert check_fits(TINY, torch.device("cpu"), available=GIB) == []
    assert "sized for a GPU" in check_fits(PRESETS["wide (GPU)"], torch.device("cpu"), available=64 * GIB)[0]
    with pytest.raises(LabError, match="'full' or 'block'"):
        TwinRun(TINY, rule="prenorm", start=False)


def test_departure_from_uniform_by_hand():
    uniform = np.array([[1.0, np.nan, np.nan], [0.5, 0.5, np.nan], [1 / 3, 1 / 3, 1 / 3]])
    assert departure(uniform) == pytest.approx(0.0)
    moved = uniform.copy()
    moved[2] = [0.5, 0.3, 0.2]
    assert departure(moved) == pytest.approx(0.5 - 1 / 3)


def test_llama_style_twins_train_and_save(tmp_path):
    run = TwinRun(
        TINY, rule="block", attnres_block_size=2, block="llama", device="cpu", max_steps=3, max_seconds=60
    )
    state = run.wait(60)
    assert state.status == "finished" and state.step == 3
    assert all(np.isfinite(state.losses[twin]).all() for twin in TWINS)
    assert all(m.config.position == "rope" and m.config.mlp == "gated" for m in run.models.values())
    saved = load_model(run.save("attnres", tmp_path / "llama-block"))
    ids = torch.tensor([saved.tokenizer.encode(PROBE_TEXT)[:32]])
    with torch.no_grad():
        assert torch.equal(saved(ids).logits, run.models["attnres"].eval()(ids).logits)
    assert "block='llama'" in (tmp_path / "llama-block" / "README.md").read_text()
    with pytest.raises(LabError, match="block must be one of gpt, llama"):
        TwinRun(TINY, block="mamba", device="cpu", start=False)
