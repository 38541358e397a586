"""Probe results on tiny random models and on the shipped Shakespeare trio, computed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

import probes
from attnres import Model, load_model
from tests.toys import threads, tiny_model

VOCAB = "abcdefghilprst <>/()\n"
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
SHIPPED = ("prenorm", "full", "block")
PROMPT = "To be, or not to be"


def tiny(residual: str, block: int | None = None, n_layer: int = 2, seed: int = 0) -> Model:
    """A random tiny model; depth queries randomised so AttnRes routing is not uniform."""
    return tiny_model(
        residual, block, vocab=VOCAB, n_layer=n_layer, d_model=16, block_size=32, seed=seed, query_std=1.0
    )


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; restored afterwards."""
    with threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Model]:
    """prenorm, full and block (2 sublayers per block) tiny random models, 4 sublayers each."""
    return {"prenorm": tiny("prenorm"), "full": tiny("full"), "block": tiny("block", 2)}


@pytest.fixture(scope="session")
def shipped() -> dict[str, Model]:
    """The three shipped models."""
    return {rule: load_model(SAMPLES / f"shakespeare-{rule}") for rule in SHIPPED}


def run_probes(models: dict[str, Model], text: str) -> dict[str, dict]:
    """Every probe the figures draw, per model name."""
    out = {}
    for name, model in models.items():
        out[name] = {
            "depth": probes.depth_weights(model, text),
            "norms": probes.stream_norms(model, text),
            "grads": probes.gradient_norms(model, text),
            "retrieval": probes.depth_retrieval(model, text),
            "attribution": probes.gate_attribution(model, text, n_steps=4),
            "lens": probes.logit_lens(model, text),
            "prompt": probes.encode_prompt(model, text),
        }
    return out


@pytest.fixture(scope="session")
def tiny_results(tiny_models):
    """Probe results on the tiny models, for a prompt holding an HTML tag and whitespace."""
    return run_probes(tiny_models, "ab <script>\nc d")


@pytest.fixture(scope="session")
def shipped_results(shipped):
    """Probe results on the shipped models for a short prompt."""
    return run_probes(shipped, PROMPT)
