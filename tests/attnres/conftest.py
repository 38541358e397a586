"""Tiny random models for the attnres tests: fp32, CPU, seeded, built in milliseconds."""

from __future__ import annotations

import pytest
import torch

from attnres import Model
from tests.toys import threads, tiny_model

VOCAB = "\n !',.?abcdefghijklmnopqrstuvwxyzABCDE"  # 38 characters


def build_model(
    residual: str = "block",
    S: int | None = None,
    n_layer: int = 4,
    d_model: int = 32,
    seed: int = 0,
    randomize_depth: bool = True,
    **fields,
) -> Model:
    """A tiny model; with randomize_depth the zero-initialised queries and the key-norm gains
    get random values, so depth attention is far from uniform and every parameter matters."""
    model = tiny_model(
        residual, S, vocab=VOCAB, n_layer=n_layer, d_model=d_model, block_size=16, seed=seed, **fields
    )
    if randomize_depth:
        randomize_depth_params(model, seed)
    return model.eval()


def randomize_depth_params(model: Model, seed: int = 0) -> None:
    """Random queries (std 0.5) and key-norm gains (0.5..1.5) at every depth site."""
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_res.query"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith("_res.norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))


def random_tokens(B: int = 2, T: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(VOCAB), (B, T), generator=gen)


@pytest.fixture
def one_thread():
    """Tiny tensors run faster on one thread than on several that wait for each other."""
    with threads(1):
        yield


@pytest.fixture
def make_model():
    return build_model


@pytest.fixture
def make_tokens():
    return random_tokens
