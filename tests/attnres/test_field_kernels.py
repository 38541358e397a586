"""The depth mix on the field's AttnRes kernels (attnres/field_kernels.py) against our fp32 sequential
path: logits and the gradient of every parameter, Full and Block at several S.

Where each library runs (docs/field_kernels.md): fla's plain-torch reference on CPU (fla-core alone,
no triton; CI installs it), liger's and flash-attn-res's Triton kernels on CPU under TRITON_INTERPRET=1
when triton is installed (not in CI: triton takes about 0.6-1 GB), everything on CUDA. Each case
skips with the adapter's own sentence when its library cannot run here. The refusals always run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnres import field_kernels
from attnres.field_kernels import FIELD_IMPLS, FieldKernelError
from tests.test_layering import LAZY, imports

ROOT = Path(__file__).resolve().parents[2]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# L = 4 sublayers. Block S=2: block 2 starts at attention 3 (a first layer, no partial source);
# S=3: the boundary falls between attention 3 and MLP 4; S=5 >= L: one block (softmax over [b_0, partial]).
CASES = [("full", None), ("block", 2), ("block", 3), ("block", 5)]
# (logits, gradients), each relative to the tensor's largest entry, about 5x what was measured on CPU
# (fp32 model, these CASES): fla and liger mix in fp32 (measured <= 5e-7 logits, <= 8e-6 gradients);
# flash-attn-res stores every h_l in bf16 (measured 2.2e-3, 2.2e-2); fast-attnres takes bf16 sources
# and a bf16 query (CUDA only, not measured here: flash-attn-res's bounds with room for the query).
TOLERANCE = {
    "fla": (1e-5, 5e-5),
    "liger": (1e-5, 5e-5),
    "flash_attn_res": (1e-2, 1e-1),
    "fast_attnres": (3e-2, 1.5e-1),
}


@pytest.fixture(scope="module")
def interpreter():
    """TRITON_INTERPRET=1 for this module's CPU runs, set before triton's first import (when triton
    is there and no CUDA): liger's and flash-attn-res's kernels then run in Triton's interpreter."""
    before = os.environ.get("TRITON_INTERPRET")
    if not torch.cuda.is_available() and "triton" not in sys.modules and importlib.util.find_spec("triton"):
        os.environ["TRITON_INTERPRET"] = "1"
    yield
    if before is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = before


def _model_and_batch(make_model, residual, S, device):
    model = make_model(residual, S, n_layer=2, d_model=32).to(device)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, model.config.vocab_size, (1, 3), generator=gen).to(device)
    targets = torch.randint(0, model.config.vocab_size, (1, 3), generator=gen).to(device)
    return model, tokens, targets


def _logits_and_grads(model, tokens, targets, impl):
    model.zero_grad(set_to_none=True)
    out = model(tokens, depth_impl=impl)
    F.cross_entropy(out.logits.view(-1, out.logits.size(-1)), targets.view(-1)).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def _close(actual, expected, tol, what):
    scale = expected.abs().max().item()
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= tol * max(scale, 1e-6), f"{what}: max |diff| {diff:.3g} over max |ref| {scale:.3g}"


def _check_parity(make_model, impl, residual, S, device):
    model, tokens, targets = _model_and_batch(make_model, residual, S, device)
    reason = field_kernels.refusal(model.config, impl, torch.device(device))
    if reason:
        pytest.skip(reason)
    ref_logits, ref_grads = _logits_and_grads(model, tokens, targets, "sequential")
    logits, grads = _logits_and_grads(model, tokens, targets, impl)
    logits_tol, grads_tol = TOLERANCE[impl]
    _close(logits, ref_logits, logits_tol, "logits")
    assert grads.keys() == ref_grads.keys()
    for name, expected in ref_grads.items():  # every parameter, the depth queries and key gains too
        _close(grads[name], expected, grads_tol, name)


@pytest.mark.parametrize("residual,S", CASES)
@pytest.mark.parametrize("impl", FIELD_IMPLS)
def test_field_kernel_equals_sequential_on_cpu(make_model, interpreter, impl, residual, S):
    _check_parity(make_model, impl, residual, S, "cpu")


@cuda
@pytest.mark.parametrize("residual,S", CASES)
@pytest.mark.parametrize("impl", FIELD_IMPLS)
def test_field_kernel_equals_sequential_on_cuda(make_model, impl, residual, S):
    _check_parity(make_model, impl, residual, S, "cuda")


@cuda
@pytest.mark.parametrize("impl", FIELD_IMPLS)
def test_field_kernel_under_bf16_autocast_tracks_sequential(make_model, make_tokens, impl):
    model = make_model("block", 4, n_layer=4, d_model=64).cuda()
    tokens = make_tokens(2, 16).cuda()
    reason = field_kernels.refusal(model.config, impl, tokens.device)
    if reason:
        pytest.skip(reason)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected = model(tokens, depth_impl="sequential").logits.float()
        logits = model(tokens, depth_impl=impl).logits.float()
    _close(logits, expected, 5e-2, "bf16 logits")


# ---- refusals: one sentence each, and nothing imported that was not asked for ---------------------
def test_prenorm_and_peer_conventions_are_refused(make_model, make_tokens):
    with pytest.raises(FieldKernelError, match="PreNorm baseline"):
        make_model("prenorm")(make_tokens(), depth_impl="fla")
    with pytest.raises(FieldKernelError, match="paper's conventions only"):
        make_model("block", 2, readout="sum")(make_tokens(), depth_impl="liger")


def test_internals_and_widths_the_ops_cannot_give_are_refused(make_model, make_tokens):
    with pytest.raises(FieldKernelError, match="no depth weights"):
        make_model("full")(make_tokens(), depth_impl="fla", return_internals=True)
    with pytest.raises(FieldKernelError, match="power of two.*got 24"):
        make_model("block", 2, d_model=24)(make_tokens(), depth_impl="flash_attn_res")


def test_cpu_refusals_name_what_is_needed(make_model, make_tokens, monkeypatch):
    model = make_model("full")
    with pytest.raises(FieldKernelError, match="CUDA bf16 tensors only"):
        model(make_tokens(), depth_impl="fast_attnres")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FieldKernelError, match="TRITON_INTERPRET=1"):
        model(make_tokens(), depth_impl="liger")


def test_an_absent_library_is_refused_with_what_to_install(make_model, make_tokens, monkeypatch):
    monkeypatch.setitem(sys.modules, "fla", None)  # import fla now fails, installed or not
    field_kernels._load.cache_clear()
    try:
        with pytest.raises(FieldKernelError, match=r"needs fla-core \(its version in requirements-gpu"):
            make_model("full")(make_tokens(), depth_impl="fla")
    finally:
        field_kernels._load.cache_clear()


def test_fast_attnres_loads_beside_our_attnres(make_model):
    """Its package is named attnres too: it is loaded under another name, ours stays ``attnres``."""
    try:
        importlib.metadata.distribution("fast-attnres")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fast-attnres is not installed")
    mix = field_kernels._load("fast_attnres", "cpu")
    assert Path(sys.modules["attnres"].__file__).parent == ROOT / "attnres"
    assert not Path(sys.modules["_fast_attnres"].__file__).is_relative_to(ROOT)
    sources = [torch.randn(2, 3, 32, dtype=torch.bfloat16)] * 2
    with pytest.raises(RuntimeError, match="CUDA"):  # its own check: the op is CUDA-only
        mix(sources, make_model("full").site(3), 1e-6)


def test_unknown_depth_impl_lists_the_field_kernels(make_model, make_tokens):
    with pytest.raises(ValueError, match="fast_attnres"):
        make_model("full")(make_tokens(), depth_impl="flash")


@pytest.mark.parametrize("path", sorted((ROOT / "attnres").rglob("*.py")), ids=lambda p: p.name)
def test_no_library_is_imported_at_module_level(path):
    """CPU installs never import a field library (nor triton) unless a forward asks for one."""
    if ".".join(path.relative_to(ROOT).with_suffix("").parts) in LAZY:
        pytest.skip("imported lazily itself (our own Triton kernel)")
    libraries = {"fla", "liger_kernel", "flash_attn_res", "triton"}
    top_level = {name.split(".")[0] for name, inside in imports(path) if not inside}
    assert not top_level & libraries, f"{path.relative_to(ROOT)} imports {top_level & libraries} at import"
