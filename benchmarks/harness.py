"""Timing and memory measurement: warm-up, interleaved repeats, medians, peak memory per step.

Every variant of one shape is timed in the same loop, in a rotating order, so clock and thermal
drift hit all of them alike. One sample is ``inner`` back-to-back calls between two device
synchronisations, divided by ``inner`` (chosen at warm-up so a sample lasts ``min_sample_ms``).
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Variant:
    """One thing to time: a labelled zero-argument step and what it keeps in memory."""

    label: dict  # shape, phase, residual, attnres_block_size, depth_impl
    step: Callable[[], object]
    persistent_bytes: int = 0  # weights (+ optimizer state) this variant holds between steps
    inner: int = 1
    samples: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "/".join(str(self.label[k]) for k in ("shape", "phase", "residual", "depth_impl"))


def synchronize(device: torch.device) -> None:
    """Waits for queued device work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(step: Callable[[], object], calls: int, device: torch.device) -> float:
    """Mean milliseconds per call over ``calls`` back-to-back calls."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    synchronize(device)
    return (time.perf_counter() - start) * 1000 / calls


def warm_up(variants: list[Variant], device: torch.device, warmup: int, min_sample_ms: float, errors: list):
    """Runs each variant ``warmup`` times (compiles, autotunes, allocates); drops the ones that fail."""
    live = []
    for variant in variants:
        try:
            for _ in range(max(1, warmup)):
                variant.step()
            once = _time_calls(variant.step, 1, device) if min_sample_ms > 0 else 0.0
        except Exception as exc:  # out of memory, a compiler that cannot run here: report, go on
            errors.append(f"{variant.name}: {type(exc).__name__}: {str(exc)[:300]}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        variant.inner = max(1, min(100, math.ceil(min_sample_ms / once))) if once else 1
        live.append(variant)
    return live


def time_interleaved(variants: list[Variant], device: torch.device, repeats: int) -> None:
    """Fills each variant's ``samples`` with ``repeats`` timings, rotating the order each round."""
    n = len(variants)
    for r in range(repeats):
        for variant in variants[r % n :] + variants[: r % n]:
            variant.samples.append(_time_calls(variant.step, variant.inner, device))


def median_ms(variant: Variant) -> float:
    return statistics.median(variant.samples)


def peak_memory_mb(variant: Variant, device: torch.device) -> float | None:
    """Peak memory of one step as if the variant ran alone: what the step allocates on top of what
    was already there (other variants' models included), plus what the variant itself keeps.
    None on CPU (no allocator statistics without tracing every allocation)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    variant.step()
    synchronize(device)
    extra = torch.cuda.max_memory_allocated(device) - before
    return (extra + variant.persistent_bytes) / 2**20


def tensor_bytes(tensors) -> int:
    """Bytes of distinct tensors (a tied weight counts once)."""
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_run_header() -> dict:
    """What every CPU results file starts with: the CPU, torch's thread count and version, the time."""
    return {
        "device": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(result: dict, out: str | Path, render: Callable[[dict], str]) -> str:
    """Writes result as JSON at out and its Markdown beside it (same name, .md); returns the Markdown."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    markdown = render(result)
    out.with_suffix(".md").write_text(markdown)
    return markdown
