"""CPU forward time of Block AttnRes (S=4), Full AttnRes and their PreNorm twin, at one size.

    python -m benchmarks.cpu_forward_ratio [--repeats 30] [--out benchmarks/results/cpu_forward_ratio.json]

Shape "sample" (the shipped models): n_layer 8, d_model 128, 4 heads, seq 256, batch 4, fp32,
torch.inference_mode. All variants share the PreNorm twin's weights and are timed in one loop, in an
order that rotates each round, so machine load and clock drift hit them alike; we report the median.
Prints a Markdown table and writes the DESIGN.md §5 JSON (plus the CPU name and thread count).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from attnres import Model, ModelConfig
from benchmarks.harness import cpu_name, cpu_run_header, write_results

SHAPE = dict(vocab_size=96, block_size=256, n_layer=8, n_head=4, d_model=128)
BATCH, SEQ = 4, 256
VARIANTS = [  # (residual, S, depth_impl); the first is the baseline of every ratio
    ("prenorm", None, "sequential"),
    ("block", 4, "two_phase"),
    ("block", 4, "sequential"),
    ("full", None, "two_phase"),
    ("full", None, "sequential"),
]


def build_models() -> list[Model]:
    """One model per variant; every AttnRes model copies the PreNorm twin's weights."""
    torch.manual_seed(0)
    twin = Model(ModelConfig(**SHAPE, residual="prenorm")).eval()
    models = []
    for residual, S, _ in VARIANTS:
        model = Model(ModelConfig(**SHAPE, residual=residual, attnres_block_size=S)).eval()
        model.load_state_dict(twin.state_dict(), strict=False)  # depth params keep their zero init
        models.append(model)
    return models


def time_interleaved(models: list[Model], tokens: torch.Tensor, warmup: int, repeats: int) -> list[list]:
    """Milliseconds per forward, ``repeats`` samples per variant, order rotating each round."""
    impls = [impl for _, _, impl in VARIANTS]
    steps = [lambda m=m, impl=impl: m(tokens, depth_impl=impl) for m, impl in zip(models, impls, strict=True)]
    samples: list[list[float]] = [[] for _ in steps]
    with torch.inference_mode():
        for step in steps:
            for _ in range(warmup):
                step()
        n = len(steps)
        for r in range(repeats):
            for i in [(r + k) % n for k in range(n)]:
                start = time.perf_counter()
                steps[i]()
                samples[i].append((time.perf_counter() - start) * 1000)
    return samples


def results(samples: list[list[float]]) -> list[dict]:
    medians = [statistics.median(s) for s in samples]
    rows = []
    for (residual, S, impl), ms in zip(VARIANTS, medians, strict=True):
        rows.append({
            "shape": "sample", "phase": "inference", "residual": residual, "attnres_block_size": S,
            "depth_impl": impl, "dtype": "fp32", "batch": BATCH, "seq": SEQ, "median_ms": round(ms, 3),
            "tokens_per_s": round(BATCH * SEQ / ms * 1000, 1), "peak_mem_mb": None,
            "ratio_vs_prenorm": round(ms / medians[0], 4),
        })  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    lines = [
        "# CPU forward ratio (python -m benchmarks.cpu_forward_ratio)",
        "",
        f"CPU forward, {report['device']} ({report['threads']} threads), torch {report['torch']}, "
        f"{report['date']}; n_layer 8, d_model 128, batch {BATCH} x seq {SEQ}, fp32, "
        f"median of {report['repeats']} interleaved repeats; "
        f"1-min load average before/after {report['load_average_1min']}.",
        "",
        "| residual | S | depth_impl | median ms | tokens/s | vs PreNorm |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        cells = (r["residual"], r["attnres_block_size"] or "", r["depth_impl"], f"{r['median_ms']:.2f}",
                 f"{r['tokens_per_s']:,.0f}", f"{r['ratio_vs_prenorm']:.3f}")  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cpu_forward_ratio.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    models = build_models()
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    samples = time_interleaved(models, tokens, args.warmup, args.repeats)
    report = {
        **cpu_run_header(), "device": f"CPU: {cpu_name()}", "machine": platform.machine(),
        "repeats": args.repeats,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: a busy
        "results": results(samples),  # machine inflates every time, and the ratios less so
    }  # fmt: skip
    print(write_results(report, args.out, markdown))


if __name__ == "__main__":
    main()
