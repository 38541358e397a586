"""Tiny models and a thread setting shared by the test packages (conftest files cannot be imported
under pytest's importlib mode; this module can, with the repository root on ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from attnres import CharTokenizer, Model, ModelConfig


def tiny_model(
    residual: str,
    block: int | None,
    *,
    vocab: str,
    n_layer: int,
    d_model: int,
    block_size: int,
    seed: int = 0,
    query_std: float | None = None,
    **fields,
) -> Model:
    """A seeded random model in eval mode, 2 heads; with query_std the zero-initialised depth
    queries are redrawn from N(0, query_std) right after the weights (same global RNG stream)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=len(vocab),
        block_size=block_size,
        n_layer=n_layer,
        n_head=2,
        d_model=d_model,
        residual=residual,
        attnres_block_size=block,
        **fields,
    )
    model = Model(config, CharTokenizer(vocab)).eval()
    if query_std is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("res.query"):
                    p.normal_(0.0, query_std)
    return model


@contextmanager
def threads(n: int) -> Iterator[None]:
    """torch runs on n threads inside, and on as many as before afterwards (tiny tensors run fastest
    on one thread and do not fight a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
