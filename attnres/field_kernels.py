"""The depth mix on the field's maintained AttnRes kernels: ``Model.forward(depth_impl=...)``.

Four libraries on the package index ship an AttnRes op (versions in requirements-gpu.txt; the
conventions each one implements are compared in docs/field_kernels.md):

    "fla"             fla-core: ``fla.ops.attnres.fused_attnres`` (Triton, fwd+bwd) on CUDA; on CPU its
                      plain-torch ``naive_attnres``, same signature: (query, residuals, rms_weight, rms_eps)
    "flash_attn_res"  flash-attn-res: paper Alg. 1 as two torch.library ops, phase 1 (a block's queries
                      [G, d] against the completed blocks [K, B, T, d]) and phase 2 (merge the partial sum);
                      bf16 outputs, parameter-free key norm, d a power of two
    "liger"           liger-kernel: ``LigerAttnResFunction`` (Triton, fwd+bwd), (V [K, B, T, d], w, g, eps)
    "fast_attnres"    fast-attnres: ``attnres(values, query, eps=)`` (Triton, fwd+bwd), CUDA bf16 only,
                      parameter-free key norm; its top-level package is named ``attnres`` like ours, so
                      it is loaded from its installed files under another name

Each site l reads the sources DESIGN.md §1 gives it (the model's own bookkeeping, ``model._Sources``)
and the library mixes them. Where an op has no key-norm gain g, it is folded into the query:
w . (g * v) / rms(v) = (w * g) . v / rms(v). Every op gets the model's key-norm eps. Nothing of these
libraries is imported until a forward asks for it, so CPU installs never need them (nor triton).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .sources import SourceRule

FIELD_IMPLS = ("fla", "flash_attn_res", "liger", "fast_attnres")
DISTRIBUTIONS = {  # depth_impl -> the package to install (exact versions: requirements-gpu.txt)
    "fla": "fla-core",
    "flash_attn_res": "flash-attn-res",
    "liger": "liger-kernel",
    "fast_attnres": "fast-attnres",
}
TRITON_ON_CPU = ("flash_attn_res", "liger")  # Triton ops that run on CPU under TRITON_INTERPRET=1


class FieldKernelError(RuntimeError):
    """A field kernel cannot run this model here; the message says why in one sentence."""


def refusal(config, impl: str, device: torch.device, recording: bool = False) -> str | None:
    """Why ``depth_impl=impl`` cannot run this model on this device, or None when it can.

    Args:
        config: the model's ModelConfig.
        impl: one of FIELD_IMPLS.
        device: where the forward runs.
        recording: internals were asked for (the ops return no depth weights to record).
    """
    return (
        _convention_refusal(config, impl, recording)
        or _device_refusal(impl, device)
        or _missing(impl, device)
    )


def _convention_refusal(config, impl: str, recording: bool) -> str | None:
    """What of this model or call the op of ``impl`` cannot represent, or None."""
    name = f"depth_impl={impl!r}"
    if config.residual == "prenorm":
        return f"{name} mixes AttnRes sources, but this model is a PreNorm baseline"
    if config.readout != "attnres" or config.first_block_has_embedding or config.depth_recency_bias:
        return (
            f"{name} is mapped for the paper's conventions only, and this model has an imported peer's "
            "readout, embedding in block 1 or recency bias; use 'sequential'"
        )
    if recording:
        return f"{name} returns no depth weights to record; ask 'sequential' or 'two_phase' for internals"
    if impl == "flash_attn_res" and config.d_model & (config.d_model - 1):
        return (
            f"{name}: flash-attn-res needs d_model to be a power of two (its kernels tile the whole "
            f"width at once), got {config.d_model}"
        )
    return None


def _device_refusal(impl: str, device: torch.device) -> str | None:
    """Why the op of ``impl`` cannot run on this device type, or None."""
    if device.type == "cuda":
        return None
    if impl == "fast_attnres":
        return f"depth_impl='fast_attnres': fast-attnres runs on CUDA bf16 tensors only, not on {device.type}"
    if impl in TRITON_ON_CPU and os.environ.get("TRITON_INTERPRET") != "1":
        return (
            f"depth_impl={impl!r} is a Triton kernel: it runs on CUDA, or on CPU under "
            "TRITON_INTERPRET=1 set before triton is first imported"
        )
    return None


def _missing(impl: str, device: torch.device) -> str | None:
    """Why the library of ``impl`` cannot be loaded here, or None."""
    try:
        _load(impl, device.type)
    except Exception as error:  # absent, triton absent, or a version that fails at import
        why = f"{error.name!r} is missing" if isinstance(error, ImportError) else str(error).split(". ")[0]
        return (
            f"depth_impl={impl!r} needs {DISTRIBUTIONS[impl]} (its version in requirements-gpu.txt), "
            f"which cannot be imported here: {why}"
        )
    return None


def depth_forward(model, v0: Tensor, impl: str, state, record=None) -> Tensor:
    """h_{L+1} [B, T, d] with every site's depth mix done by the library of ``impl``.

    Args:
        model: the Model (its sublayers, sites and config).
        v0: the embedding [B, T, d].
        impl: one of FIELD_IMPLS.
        state: the model's source bookkeeping started from v0 (``model._Sources``).
        record: internals recorder; refused (the ops return no depth weights).

    Raises:
        FieldKernelError: the library is absent or cannot represent this model here.
    """
    reason = refusal(model.config, impl, v0.device, recording=record is not None)
    if reason:
        raise FieldKernelError(reason)
    op, dtype = _load(impl, v0.device.type), _mixing_dtype(v0, impl)
    eps, L = model.config.key_norm_eps, model.config.n_sublayers
    if impl == "flash_attn_res":
        return _two_phase(model, op, state, dtype, eps)
    for l in range(1, L + 2):
        h = op([s.to(dtype) for s in state.sources()], model.site(l), eps)  # h_l
        if l == L + 1:
            return h
        state.add(l, model.sublayer(l)(h))  # v_l = f_l(Norm_l(h_l))
    raise AssertionError("unreachable")


def _two_phase(model, phases, state, dtype: torch.dtype, eps: float) -> Tensor:
    """flash-attn-res's Alg. 1, block by block.

    Phase 1 batches the block's queries against the completed blocks; a later layer merges the
    block's partial sum by phase 2. Full runs as blocks of one.
    """
    phase_1, phase_2 = phases
    rule, L = SourceRule.of(model.config), model.config.n_sublayers
    groups = [rule.block_members(n) for n in range(1, rule.N + 1)] + [range(L + 1, L + 2)]
    for sites in groups:
        queries = torch.stack([model.site(l).folded_query() for l in sites])  # [G, d] = w * g
        completed = torch.stack([s.to(dtype) for s in state.completed])  # [K, B, T, d]
        out, lse = phase_1(completed, queries, eps)  # [G, B, T, d] bf16, [G, B, T]
        for j, l in enumerate(sites):
            partial = state.partial  # None at a block's first layer: phase 1 alone
            h = out[j] if partial is None else phase_2(partial.to(dtype), queries[j], out[j], lse[j], eps)
            if l == L + 1:
                return h
            state.add(l, model.sublayer(l)(h))
    raise AssertionError("unreachable")


def _mixing_dtype(v0: Tensor, impl: str) -> torch.dtype:
    """The sources' common dtype: fast-attnres takes bf16 only; else the autocast dtype, else v0's."""
    if impl == "fast_attnres":
        return torch.bfloat16
    kind = v0.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else v0.dtype


# ---- the libraries, imported on first use ----------------------------------------------------
@functools.cache
def _load(impl: str, device_type: str):
    """The op of ``impl`` for a device type; raises ImportError when the library is absent."""
    return _LOADERS[impl](device_type)


def _fla(device_type: str) -> Callable:
    """fla's fused Triton op on CUDA; on CPU its naive reference.

    The reference is read from fla/ops/attnres/naive.py alone (fla's package __init__ imports
    triton, which naive.py itself does not need).
    """
    if device_type == "cuda":
        from fla.ops.attnres import fused_attnres as op
    else:
        naive = _package_dir("fla") / "ops" / "attnres" / "naive.py"
        op = _module_from_file("_fla_attnres_naive", naive).naive_attnres

    def mix(sources, site, eps):  # the key-norm gain is fla's rms_weight: nothing to fold
        return op(site.query, sources, site.norm.weight, rms_eps=eps)

    return mix


def _liger(device_type: str) -> Callable:
    """liger's fused Triton op (on CPU only in Triton's interpreter)."""
    from liger_kernel.ops.attn_res import LigerAttnResFunction

    def mix(sources, site, eps):  # V [K, B, T, d], w_query, w_norm (the key-norm gain), eps
        return LigerAttnResFunction.apply(torch.stack(sources), site.query, site.norm.weight, eps)

    return mix


def _fast_attnres(device_type: str) -> Callable:
    """fast-attnres's package is named ``attnres``, like ours: loaded from its files as ``_fast_attnres``."""
    try:
        init = Path(importlib.metadata.distribution("fast-attnres").locate_file("attnres/__init__.py"))
    except importlib.metadata.PackageNotFoundError as error:
        raise ImportError("fast-attnres is not installed", name="fast_attnres") from error
    op = _module_from_file("_fast_attnres", init, package=True).attnres

    def mix(sources, site, eps):  # parameter-free key norm: the gain folded into a bf16 query
        return op(sources, site.folded_query().to(torch.bfloat16), eps=eps)

    return mix


def _flash_attn_res(device_type: str) -> tuple[Callable, Callable]:
    """flash-attn-res's phase-1 and phase-2 ops (on CPU only in Triton's interpreter)."""
    import flash_attn_res as far

    if device_type != "cuda":  # the interpreter cannot benchmark autotune configs: keep the first of each
        for kernel in (
            far.phase_1_batched_attention_forward_kernel,
            far.phase_1_batched_attention_backward_kernel,
            far.phase_2_online_softmax_merge_forward_kernel,
            far.phase_2_online_softmax_merge_backward_kernel,
            far.reduce_grad_queries_kernel,
        ):
            far.set_autotune_configs(kernel, kernel.configs[:1])
    return far.phase_1_batched_attention_triton_op, far.phase_2_online_softmax_merge_triton_op


_LOADERS = {"fla": _fla, "flash_attn_res": _flash_attn_res, "liger": _liger, "fast_attnres": _fast_attnres}


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{name} is not installed", name=name)
    return Path(next(iter(spec.submodule_search_locations)))


def _module_from_file(alias: str, path: Path, package: bool = False):
    """Executes one installed file (a package's __init__ with ``package``) as module ``alias``."""
    if alias in sys.modules:
        return sys.modules[alias]
    where = {"submodule_search_locations": [str(path.parent)]} if package else {}
    spec = importlib.util.spec_from_file_location(alias, path, **where)
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[alias]
        raise
    return module
