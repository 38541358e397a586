"""The one device / dtype policy: CUDA when available, then MPS, else CPU; fp32 on CPU."""

from __future__ import annotations

from contextlib import nullcontext

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def available_devices() -> list[str]:
    """Device names usable on this machine, best first."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names + ["cpu"]


def select_device(preference: str | None = None) -> torch.device:
    """The requested device if usable, else the best available one.

    Args:
        preference: "cuda", "mps", "cpu", or None / "auto" for the best available.
    """
    usable = available_devices()
    if preference in (None, "auto") or preference not in usable:
        return torch.device(usable[0])
    return torch.device(preference)


def dtype_name(device: torch.device | str, name: str | None = None) -> str:
    """The precision a computation runs in.

    Always "fp32" on CPU; on an accelerator the requested one (default "fp32").
    """
    if torch.device(device).type == "cpu" or name not in DTYPES:
        return "fp32"
    return name


def autocast_for(device: torch.device | str, name: str):
    """bf16/fp16 autocast on CUDA as asked; a no-op context on CPU/MPS or for fp32.

    Args:
        device: where the computation runs.
        name: "bf16", "fp16" or "fp32" (a key of ``DTYPES``).
    """
    if torch.device(device).type == "cuda" and name != "fp32":
        return torch.autocast("cuda", dtype=torch.bfloat16 if name == "bf16" else torch.float16)
    return nullcontext()
