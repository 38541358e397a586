"""Training-lab presets and their resource check: will two twins fit on this device?

The estimate is deliberately rough and on the safe side: fp32 weights, gradients and two AdamW
moments of both twins, plus the activations autograd keeps for one training step of the larger twin
(the twins step one after the other), plus half again for the allocator and temporaries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .config import BLOCK_FAMILIES, ModelConfig
from .model import empty_model
from .sources import SourceRule

GIB = 2**30
VOCAB = 84  # characters of the Shakespeare corpus (attnres.data)


class LabError(ValueError):
    """The lab cannot do what was asked; the message is one sentence a person can act on."""


@dataclass(frozen=True)
class Preset:
    """Sizes and budget of one lab run (both twins share them)."""

    name: str
    n_layer: int  # Transformer blocks; L = 2 * n_layer sublayers
    n_head: int
    d_model: int
    block_size: int  # context (characters)
    batch_size: int
    steps: int  # step budget (each twin takes this many optimiser steps)
    max_seconds: float  # wall-time budget; the run ends at whichever comes first
    target: str  # "cpu" or "cuda": where the budget was sized to show the depth weights moving
    lr: float = 3e-3
    warmup: int = 20
    eval_every: int = 50  # held-out loss every this many steps
    eval_windows: int = 4  # held-out windows of block_size characters
    probe_every: int = 5  # depth weights / stream RMS on the probe prompt every this many steps


PRESETS = {
    p.name: p
    for p in (
        Preset("tiny (CPU, ~1 min)", 4, 4, 48, 64, 16, steps=500, max_seconds=90, target="cpu"),
        Preset("small (CPU, ~2 min)", 6, 4, 64, 128, 8, steps=500, max_seconds=180, target="cpu"),
        Preset(
            "deeper (GPU)", 12, 4, 128, 256, 32, steps=1500, max_seconds=300, target="cuda",
            lr=2e-3, warmup=50, eval_every=100, eval_windows=8, probe_every=10,
        ),
        Preset(
            "wide (GPU)", 4, 8, 512, 256, 32, steps=1500, max_seconds=300, target="cuda",
            lr=1e-3, warmup=50, eval_every=100, eval_windows=8, probe_every=10,
        ),
    )
}  # fmt: skip


def count_params(
    preset: Preset, rule: str = "full", attnres_block_size: int | None = None, block: str = "gpt"
) -> int:
    """Exact parameter count of one twin, from a model built on the meta device (no memory)."""
    config = ModelConfig(
        **BLOCK_FAMILIES[block],
        vocab_size=VOCAB,
        block_size=preset.block_size,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        d_model=preset.d_model,
        residual=rule,
        attnres_block_size=attnres_block_size if rule == "block" else None,
    )
    return empty_model(config).num_params()


def _sources(L: int, rule: str, attnres_block_size: int | None) -> int:
    """Sources stacked over all L+1 sites (each kept raw and RMS-normalised for backward).

    Full: the exact sum of K_l; Block: every site counted with N + 2 sources (an over-estimate).
    """
    if rule not in ("full", "block"):
        return 0
    sources = SourceRule(rule, L, attnres_block_size or 1)
    if rule == "block":
        return (L + 1) * (sources.N + 2)
    return sum(len(sources.labels(l)) for l in range(1, L + 2))


def estimate_memory(
    preset: Preset, rule: str = "full", attnres_block_size: int | None = None, block: str = "gpt"
) -> int:
    """Bytes needed to train the PreNorm twin and its ``rule`` twin side by side (an over-estimate)."""
    L, d, T = 2 * preset.n_layer, preset.d_model, preset.block_size
    params = count_params(preset, "prenorm", block=block) + count_params(
        preset, rule, attnres_block_size, block
    )
    states = 4 * 4 * params  # fp32 weights, gradients, AdamW exp_avg and exp_avg_sq
    per_token = L * 12 * d + preset.n_layer * preset.n_head * T * 2  # sublayers + attention maps
    per_token += 2 * _sources(L, rule, attnres_block_size) * d + 3 * VOCAB  # depth sources, logits
    activations = 4 * preset.batch_size * T * per_token
    return int(1.5 * (states + activations))


def available_memory(device: torch.device) -> int:
    """Bytes free for the lab on ``device`` (CUDA: free device memory; else free host memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def check_fits(
    preset: Preset,
    device: torch.device,
    rule: str = "full",
    attnres_block_size: int | None = None,
    available: int | None = None,
    block: str = "gpt",
) -> list[str]:
    """Refuses a preset too big for ``device``; returns notes worth showing (e.g. slow on CPU).

    Args:
        preset: the lab preset.
        device: where the twins would train.
        rule: the AttnRes twin's rule ("full" or "block").
        attnres_block_size: S for block.
        available: bytes free (default: measured by ``available_memory``).
        block: the twins' block family (``config.BLOCK_FAMILIES``).

    Raises:
        LabError: the estimate exceeds what the device has free.
    """
    device = torch.device(device)
    need = estimate_memory(preset, rule, attnres_block_size, block)
    have = available_memory(device) if available is None else available
    if need > have:
        raise LabError(
            f"The preset '{preset.name}' needs about {need / GIB:.1f} GiB to train two models side "
            f"by side, but the {device.type} device has only {have / GIB:.1f} GiB free; pick a "
            "smaller preset or a device with more memory."
        )
    if preset.target == "cuda" and device.type != "cuda":
        return [
            f"The preset '{preset.name}' is sized for a GPU; on the {device.type} it will reach its "
            f"{preset.max_seconds:g} s limit after few steps, so the depth weights move less."
        ]
    return []
