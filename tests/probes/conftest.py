"""Tiny models for the probe tests: random ones for every rule, and hand-set toys with known answers.

The "bias toy" zeroes every weight of every sublayer and gives each sublayer's output projection a
bias e_l (a one-hot direction), so v_l = e_l for every token, exactly; the embedding lives in the
other directions, so the sources are orthogonal and every norm, share and weight is known by hand.
"""

from __future__ import annotations

import pytest
import torch

from attnres import Model
from tests.toys import threads, tiny_model

VOCAB = "abcdefgh ?"
RULES = [("prenorm", None), ("full", None), ("block", 2), ("block", 3)]


def build(
    residual: str = "full",
    block: int | None = None,
    seed: int = 0,
    n_layer: int = 3,
    d_model: int = 16,
    bias: bool = False,
    block_size: int = 16,
) -> Model:
    """A random tiny model in eval mode (queries randomised too, so AttnRes routing is not uniform)."""
    return tiny_model(
        residual, block, vocab=VOCAB, n_layer=n_layer, d_model=d_model, block_size=block_size, seed=seed,
        query_std=1.0, bias=bias,
    )  # fmt: skip


def bias_toy(residual: str = "full", block: int | None = None, n_layer: int = 3, d_model: int = 16) -> Model:
    """v_l = e_l exactly (l = 1..L); v_0 has no component along e_1..e_L; queries zero."""
    model = build(residual, block, n_layer=n_layer, d_model=d_model, bias=True)
    L = model.config.n_sublayers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("blocks.") and "res." not in name and "norm" not in name:
                p.zero_()
            if name.endswith("res.query"):
                p.zero_()
        for l in range(1, L + 1):
            block_ = model.blocks[(l - 1) // 2]
            (block_.attn if l % 2 else block_.mlp).c_proj.bias[l] = 1.0
        model.wte.weight[:, 1 : L + 1] = 0.0
        model.wpe.weight[:, 1 : L + 1] = 0.0
    return model


def force_reading(model: Model, site: int, label: str, scale: float = 20.0) -> None:
    """Sets site's query to scale * the unit direction of its source `label` (a bias toy's sources are
    orthogonal and token-independent except the embedding), so the site reads that source only."""
    from probes import trace

    sources = trace(model, "ab").sources(site)  # [K, B, T, d]
    direction = sources[model.depth_source_labels(site).index(label), 0, 0]
    with torch.no_grad():
        model.site(site).query.copy_(scale * direction / direction.norm())


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight a busy machine); restored afterwards."""
    with threads(1):
        yield


@pytest.fixture
def make_model():
    """build(residual, block, seed, ...) -> a random tiny model."""
    return build


@pytest.fixture
def make_bias_toy():
    """bias_toy(residual, block) -> the hand-set toy."""
    return bias_toy


@pytest.fixture
def forcing():
    """force_reading(model, site, label, scale)."""
    return force_reading
