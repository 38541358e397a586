"""The fused depth-attention path (attnres/kernels.py) against the model's own equations.

CPU: the kernel's torch reference equals DepthAttention, the fused two-phase loop equals the
sequential path, and depth_impl="fused" falls back to two_phase. CUDA: the Triton kernel equals the
reference and the fused model path equals the sequential one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attnres import kernels

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ROOT = Path(__file__).resolve().parents[2]


def weights_from_state(sources, queries, eps: float, m, s):
    """alpha [G, N, K] = exp(logit - m) / s from a final (m, s): the state must describe the softmax."""
    v = sources.float()
    logits = torch.einsum("knd,gd->gnk", v, queries.float()) * torch.rsqrt(v.pow(2).mean(-1) + eps).T
    return (logits - m[..., None]).exp() / s[..., None]


def _site_and_sources(make_model, K=5, B=2, T=7, seed=0):
    model = make_model("full", n_layer=3, seed=seed)
    site = model.site(4)  # a site with random query and gain (conftest randomises them)
    gen = torch.Generator().manual_seed(seed)
    sources = (
        torch.randn(K, B, T, model.config.d_model, generator=gen)
        * torch.linspace(0.5, 3, K)[:, None, None, None]
    )
    return model, site, sources


def test_reference_equals_depth_attention(make_model):
    """The kernel's math (gain folded into the query, keys normalised in place) is the paper's Eq. 2-3."""
    model, site, sources = _site_and_sources(make_model)
    K, B, T, d = sources.shape
    weights = site.weights(sources)  # [B, T, K]
    expected = torch.einsum("btk,kbtd->btd", weights, sources)
    query = site.folded_query().detach()[None]
    h, m, s = kernels.depth_attend_reference(sources.reshape(K, -1, d), query, model.config.key_norm_eps)
    torch.testing.assert_close(h.view(B, T, d), expected, atol=1e-5, rtol=1e-5)
    alpha = weights_from_state(sources.reshape(K, -1, d), query, model.config.key_norm_eps, m, s)
    torch.testing.assert_close(alpha.view(B, T, K), weights, atol=1e-6, rtol=1e-5)
    assert torch.allclose(alpha.sum(-1), torch.ones(B * T))


def test_reference_resumes_from_a_state(make_model):
    """Online softmax: sources split in two (state carried over) equals all of them at once."""
    model, site, sources = _site_and_sources(make_model, K=6)
    flat = sources.flatten(1, 2)
    queries = torch.randn(3, flat.shape[-1])
    eps = model.config.key_norm_eps
    whole = kernels.depth_attend_reference(flat, queries, eps)
    first = kernels.depth_attend_reference(flat[:4], queries, eps)
    resumed = kernels.depth_attend_reference(flat[4:], queries, eps, state=first)
    for a, b in zip(whole, resumed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("residual", "S"), [("full", None), ("block", 1), ("block", 3), ("block", 4), ("block", 9)]
)
def test_fused_two_phase_loop_equals_sequential(make_model, make_tokens, residual, S):
    """The buffer-based two-phase loop of kernels.py, run on the torch reference (CPU)."""
    model = make_model(residual, S=S, n_layer=4)
    tokens = make_tokens(2, 16)
    with torch.no_grad():
        expected = model(tokens, depth_impl="sequential").logits
        v0 = model.wte(tokens) + model.wpe(torch.arange(tokens.shape[1]))
        logits = model.readout(kernels.fused_two_phase(v0, model.two_phase_plan(), backend="torch"))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("residual", ["prenorm", "full", "block"])
def test_fused_falls_back_to_two_phase_on_cpu(make_model, make_tokens, residual):
    model = make_model(residual, S=3 if residual == "block" else None)
    tokens = make_tokens()
    with torch.no_grad():
        fused = model(tokens, depth_impl="fused", return_internals=True)
        two_phase = model(tokens, depth_impl="two_phase", return_internals=True)
    assert torch.equal(fused.logits, two_phase.logits)
    if residual != "prenorm":
        assert all(
            torch.equal(a, b)
            for a, b in zip(fused.internals.depth_weights, two_phase.internals.depth_weights, strict=True)
        )


def test_fused_keeps_autograd_by_falling_back(make_model, make_tokens):
    """The kernel has no backward: with grad enabled, "fused" must still train (two_phase)."""
    model = make_model("block", S=2)
    tokens = make_tokens()
    loss = model(tokens, tokens, depth_impl="fused").loss
    loss.backward()
    assert model.blocks[1].attn_res.query.grad is not None
    assert model.blocks[1].attn_res.query.grad.abs().sum() > 0


def test_unknown_depth_impl_is_refused(make_model, make_tokens):
    with pytest.raises(ValueError, match="fused"):
        make_model("full")(make_tokens(), depth_impl="triton")


@pytest.mark.skipif(
    os.environ.get("ATTNRES_TRITON_INTERPRET") != "1", reason="opt-in: set ATTNRES_TRITON_INTERPRET=1"
)
def test_triton_kernel_in_interpreter():
    """The Triton kernel itself on CPU through TRITON_INTERPRET=1 (needs triton; see benchmarks/README.md)."""
    script = textwrap.dedent("""
        import torch
        from attnres import kernels
        torch.manual_seed(0)
        for K, N, d, G in [(5, 37, 32, 3), (3, 16, 80, 1), (7, 9, 24, 10)]:
            src, q = torch.randn(K, N, d), torch.randn(G, d)
            state = kernels.depth_attend_reference(torch.randn(2, N, d), q, 1e-6)
            for st in (None, state):
                ref = kernels.depth_attend_reference(src, q, 1e-6, st)
                out = kernels.depth_attend(src, q, 1e-6, st, backend="triton")
                for a, b in zip(ref, out):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        print("ok")
    """)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


# ---- CUDA ---------------------------------------------------------------------------------------


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("K", "N", "d", "G"), [(1, 5, 32, 1), (5, 1000, 80, 4), (25, 4096, 768, 4), (9, 333, 512, 11)]
)
def test_triton_kernel_equals_reference(K, N, d, G, dtype):
    assert kernels.fused_available(), "CUDA is here, so triton must import for the fused path"
    gen = torch.Generator(device="cuda").manual_seed(0)
    sources = torch.randn(K, N, d, device="cuda", generator=gen).to(dtype)
    queries = torch.randn(G, d, device="cuda", generator=gen) / d**0.5 * 4
    prior = kernels.depth_attend_reference(
        torch.randn(2, N, d, device="cuda", generator=gen).to(dtype), queries, 1e-6
    )
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    for state in (None, prior):
        ref = kernels.depth_attend_reference(sources, queries, 1e-6, state)
        out = kernels.depth_attend(sources, queries, 1e-6, state, backend="triton")
        assert out[0].dtype == dtype and out[0].shape == (G, N, d)
        for a, b in zip(out, ref, strict=True):
            torch.testing.assert_close(a.float(), b.float(), **tol)


@cuda
@pytest.mark.parametrize(
    ("residual", "S"), [("full", None), ("block", 1), ("block", 3), ("block", 4), ("block", 64)]
)
def test_fused_model_path_equals_sequential_on_cuda(make_model, make_tokens, residual, S):
    model = make_model(residual, S=S, n_layer=6, d_model=64).cuda()
    tokens = make_tokens(3, 16).cuda()
    with torch.no_grad():
        v0 = model.wte(tokens) + model.wpe(torch.arange(16, device="cuda"))
        assert kernels.fused_applicable(v0)
        expected = model(tokens, depth_impl="sequential").logits
        fused = model(tokens, depth_impl="fused").logits
        looped = model.readout(kernels.fused_two_phase(v0, model.two_phase_plan(), backend="triton"))
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(looped, expected, atol=1e-4, rtol=1e-4)


@cuda
def test_fused_under_bf16_autocast_tracks_two_phase(make_model, make_tokens):
    model = make_model("full", n_layer=6, d_model=64).cuda()
    tokens = make_tokens(3, 16).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        fused = model(tokens, depth_impl="fused").logits.float()
        two_phase = model(tokens, depth_impl="two_phase").logits.float()
    assert (fused - two_phase).abs().max() < 0.05 * two_phase.abs().max()


# ---- the default depth path (DESIGN.md §3: the fastest exact path) -----------------------------
def test_default_depth_impl_selection(monkeypatch):
    """fused on CUDA when the kernel applies and nothing is recorded; else sequential on CUDA,
    two_phase on CPU (the measurements in benchmarks/README.md)."""
    cpu = torch.zeros(1)
    assert kernels.default_depth_impl(cpu, recording=False) == "two_phase"
    assert kernels.default_depth_impl(cpu, recording=True) == "two_phase"

    class FakeCuda:
        is_cuda = True

    monkeypatch.setattr(kernels, "fused_applicable", lambda v0: True)
    assert kernels.default_depth_impl(FakeCuda(), recording=False) == "fused"
    assert kernels.default_depth_impl(FakeCuda(), recording=True) == "sequential"
    monkeypatch.setattr(kernels, "fused_applicable", lambda v0: False)  # training, or no triton
    assert kernels.default_depth_impl(FakeCuda(), recording=False) == "sequential"


@pytest.mark.parametrize(("residual", "S"), [("prenorm", None), ("full", None), ("block", 3)])
def test_default_path_equals_sequential(make_model, make_tokens, residual, S):
    model = make_model(residual, S=S)
    tokens = make_tokens()
    with torch.no_grad():
        expected = model(tokens, depth_impl="sequential").logits
        default = model(tokens).logits
        recorded = model(tokens, return_internals=True).logits
    torch.testing.assert_close(default, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(recorded, expected, atol=1e-5, rtol=1e-5)
    loss = model(tokens, tokens).loss  # with grad: the default must still train
    loss.backward()


def test_folded_queries_match_each_site(make_model):
    model = make_model("block", S=3)
    rows = model.folded_queries()
    for l in range(1, model.config.n_sublayers + 2):
        torch.testing.assert_close(rows[l - 1], model.site(l).folded_query().float())


def test_fused_loop_with_more_queries_than_one_launch_holds(make_model, make_tokens):
    """Full with 82 sublayers: groups of 9 queries, more than MAX_QUERIES_PER_LAUNCH (split launches)."""
    model = make_model("full", n_layer=41, d_model=16)
    assert max(len(g) for g in model._groups()) > kernels.MAX_QUERIES_PER_LAUNCH
    tokens = make_tokens(2, 8)
    with torch.no_grad():
        expected = model(tokens, depth_impl="sequential").logits
        v0 = model.wte(tokens) + model.wpe(torch.arange(tokens.shape[1]))
        logits = model.readout(kernels.fused_two_phase(v0, model.two_phase_plan(), backend="torch"))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("residual", "S"), [("full", None), ("block", 4)])
def test_fused_loop_drives_the_launcher_in_place(monkeypatch, make_model, make_tokens, residual, S):
    """The Triton calling convention, checked on CPU with a stand-in launcher: contiguous sources,
    fp32 contiguous queries, outputs given (phase 2: the state itself, updated in place)."""
    calls = []

    class FakeLauncher:
        @staticmethod
        def launch(sources, queries, eps, state, out=None):
            assert sources.is_contiguous() and queries.is_contiguous() and queries.dtype == torch.float32
            G, N, d = out[0].shape
            assert out[1].shape == out[2].shape == (G, N) and queries.shape == (G, d)
            assert all(x.is_contiguous() for x in out)
            assert state is None or all(a is b for a, b in zip(state, out, strict=True))
            calls.append(state is not None)
            result = kernels.depth_attend_reference(sources, queries, eps, state)
            for dst, src in zip(out, result, strict=True):
                dst.copy_(src)
            return out

    monkeypatch.setattr(kernels, "_triton", lambda: FakeLauncher)
    model = make_model(residual, S=S, n_layer=4)
    tokens = make_tokens(2, 16)
    with torch.no_grad():
        expected = model(tokens, depth_impl="sequential").logits
        v0 = model.wte(tokens) + model.wpe(torch.arange(tokens.shape[1]))
        logits = model.readout(kernels.fused_two_phase(v0, model.two_phase_plan(), backend="triton"))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert any(calls) and not all(calls)  # both phases ran


def test_fused_loop_under_autocast_keeps_bf16_sources(make_model, make_tokens):
    """Under autocast the source buffer is bf16 (like sequential's v_l), the states stay fp32."""
    model = make_model("block", S=2, n_layer=4)
    tokens = make_tokens(2, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(tokens, depth_impl="sequential").logits.float()
        v0 = model.wte(tokens) + model.wpe(torch.arange(tokens.shape[1]))
        h = kernels.fused_two_phase(v0, model.two_phase_plan(), backend="torch")
        logits = model.readout(h).float()
    assert h.dtype == torch.float32
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()
