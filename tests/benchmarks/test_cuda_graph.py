"""The benchmarks' CUDA-graph forward (benchmarks/cuda_graph.py) against the eager sequential path."""

from __future__ import annotations

import pytest
import torch

from benchmarks.cuda_graph import GraphedForward, graphed_step
from tests.attnres.conftest import build_model, random_tokens

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize(("residual", "S"), [("prenorm", None), ("full", None), ("block", 4)])
def test_graphed_forward_equals_eager_on_cuda(residual, S):
    model = build_model(residual, S=S, n_layer=6, d_model=64).cuda()
    tokens = random_tokens(3, 16).cuda()
    graphed = GraphedForward(model, tokens, depth_impl=None)
    other = random_tokens(3, 16, seed=1).cuda()
    with torch.no_grad():
        expected = model(other, depth_impl="sequential").logits
        default = model(other).logits
    torch.testing.assert_close(graphed(other), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(default, expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        eager = model(other).logits.float()
    bf16 = GraphedForward(model, tokens, depth_impl=None, dtype=torch.bfloat16)(other).float()
    assert (bf16 - eager).abs().max() < 0.05 * eager.abs().max()


@cuda
def test_graphed_step_captures_once_and_replays_new_values():
    model = build_model("block", S=2).cuda()
    tokens = random_tokens(2, 8).cuda()
    step = graphed_step(model, tokens, None, None)
    first = step().clone()
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)  # the graph reads the weights in place
        expected = model(tokens, depth_impl="sequential").logits
    again = step()
    torch.testing.assert_close(again, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(first, again)
