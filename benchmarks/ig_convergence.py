"""How many integration steps the gate attribution needs: completeness error against steps.

    python -m benchmarks.ig_convergence [--prompts 8] [--steps 16 32 64 128] [--out DIR/ig_convergence.json]

Integrated gradients split f(1) - f(0) over the gates only in the limit of many steps; the gap,
``convergence_delta``, says how far a finite Gauss-Legendre rule is from it. This runs
``probes.gate_attribution`` on the shipped trio for prompts cut at seeded random places from the
four held-out works (100-255 characters) and reports, per step count, the relative error
|delta| / max(|f(1) - f(0)|, 0.1): its maximum, median and how many (prompt, model) pairs exceed 1%
and 5%. ``probes.attribution.DEFAULT_IG_STEPS`` is chosen from this table. Writes JSON and Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

import numpy as np
import torch

from attnres import load_model
from attnres.data import VALIDATION_WORKS, _texts
from benchmarks.harness import cpu_run_header, write_results
from probes import gate_attribution

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("prenorm", "full", "block")


def held_out_prompts(n: int, seed: int = 0) -> list[dict]:
    """n prompts of 100-255 characters from the held-out works, at seeded random places."""
    texts, rng = _texts(), np.random.default_rng(seed)
    works = sorted(w for w in texts if w in VALIDATION_WORKS)
    prompts = []
    for i in range(n):
        work = works[i % len(works)]
        text = texts[work]
        start, length = int(rng.integers(5000, len(text) - 400)), int(rng.integers(100, 256))
        prompts.append({"work": work, "start": start, "text": text[start : start + length]})
    return prompts


def measure(prompts: list[dict], steps: list[int]) -> list[dict]:
    """One row per (model, prompt, steps): delta, f(1) - f(0), relative error, seconds."""
    rows = []
    for rule in MODELS:
        model = load_model(ROOT / "sample_models" / f"shakespeare-{rule}")
        for index, prompt in enumerate(prompts):
            for n in steps:
                start = datetime.datetime.now()
                result = gate_attribution(model, prompt["text"], n_steps=n)
                seconds = (datetime.datetime.now() - start).total_seconds()
                rows.append({
                    "model": rule, "prompt": index, "steps": n,
                    "delta": float(result.convergence_delta[0]),
                    "total": float(result.logprob_model[0] - result.logprob_baseline[0]),
                    "relative_error": float(result.relative_error()[0]), "seconds": seconds,
                })  # fmt: skip
    return rows


def summarise(rows: list[dict], steps: list[int]) -> list[dict]:
    """Per step count: max and median relative error, pairs over 1% and 5%, median seconds."""
    out = []
    for n in steps:
        errors = [r["relative_error"] for r in rows if r["steps"] == n]
        seconds = [r["seconds"] for r in rows if r["steps"] == n]
        out.append({
            "steps": n, "max": max(errors), "median": statistics.median(errors),
            "over_1pct": sum(e > 0.01 for e in errors), "over_5pct": sum(e > 0.05 for e in errors),
            "pairs": len(errors), "median_seconds": statistics.median(seconds),
        })  # fmt: skip
    return out


def render(result: dict) -> str:
    """Markdown table of the summary."""
    lines = [
        f"# Gate attribution: completeness error against integration steps — {result['device']}",
        "",
        f"Shipped trio x {result['n_prompts']} held-out prompts (100-255 characters); relative error = "
        "|sum of attributions - (f(1) - f(0))| / max(|f(1) - f(0)|, 0.1); torch "
        f"{result['torch']}, {result['threads']} threads, {result['date']}.",
        "",
        "| steps | max | median | pairs > 1% | pairs > 5% | median s per attribution |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['steps']} | {s['max']:.1e} | {s['median']:.1e} | {s['over_1pct']} / {s['pairs']} | "
            f"{s['over_5pct']} / {s['pairs']} | {s['median_seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Runs the measurement and writes the JSON and the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ig_convergence.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = held_out_prompts(args.prompts)
    rows = measure(prompts, args.steps)
    result = {
        **cpu_run_header(),
        "n_prompts": len(prompts),
        "prompts": prompts,
        "rows": rows,
        "summary": summarise(rows, args.steps),
    }
    print(write_results(result, args.out, render))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
