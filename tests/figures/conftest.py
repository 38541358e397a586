"""Probe results on tiny random models and on the shipped Shakespeare trio, computed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import probes
from attnres import CharTokenizer, Model, ModelConfig, load_model

VOCAB = "abcdefghilprst <>/()\n"
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
SHIPPED = ("prenorm", "full", "block")
PROMPT = "To be, or not to be"


def tiny(residual: str, block: int | None = None, n_layer: int = 2, seed: int = 0) -> Model:
    """A random tiny model; depth queries randomised so AttnRes routing is not uniform."""
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=len(VOCAB),
        block_size=32,
        n_layer=n_layer,
        n_head=2,
        d_model=16,
        residual=residual,
        attnres_block_size=block,
    )
    model = Model(config, CharTokenizer(VOCAB)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("res.query"):
                p.normal_(0.0, 1.0)
    return model


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
