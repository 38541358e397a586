"""Wall time of the full probe set on the three shipped models, CPU, one 256-character prompt.

    python -m benchmarks.probe_sweep [--repeats 3] [--threads 2] [--out DIR/probe_sweep-cpu.json]

The probe set is ``probes.sweep.full_sweep``: depth weights (+ sinks), stream norms, retrieval,
gradients, integrated-gradients attribution of the last token (64 steps, the default), four readout
ablations and the logit lens. One warm-up sweep, then ``repeats`` sweeps; we report the median per
probe and of the per-model total. Writes JSON and a Markdown table beside it (default
benchmarks/results/). The load average of the machine before and after is recorded: on a shared
machine the numbers are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from attnres import load_model
from benchmarks.harness import cpu_run_header, write_results
from probes.attribution import DEFAULT_IG_STEPS
from probes.sweep import COMPARE_VIEW, SWEEP, full_sweep

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("prenorm", "full", "block")
# 256 characters of the shipped models' own domain (every character is in their vocabulary).
PROMPT = (
    "ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon, who is already sick and pale with grief, that thou "
    "her maid art far more fair than she. Be not her maid, since she is envious."
)[:256]


def _row(model: str, probe: str, samples: list[float]) -> dict:
    return {"model": model, "probe": probe, "median_s": statistics.median(samples), "min_s": min(samples),
            "samples_s": samples}  # fmt: skip


def measure(repeats: int, attribution_steps: int = DEFAULT_IG_STEPS) -> dict:
    """Median seconds per (model, probe) and per model over ``repeats`` sweeps after one warm-up."""
    models = {rule: load_model(ROOT / "sample_models" / f"shakespeare-{rule}") for rule in MODELS}
    full_sweep(models, PROMPT[:32], attribution_steps=attribution_steps)  # warm-up
    runs = [full_sweep(models, PROMPT, attribution_steps=attribution_steps) for _ in range(repeats)]
    rows = []
    for name in models:
        for probe in SWEEP:
            samples = [run.seconds[name][probe] for run in runs]
            rows.append(_row(name, probe, samples))
        totals = [run.total_seconds(name) for run in runs]
        rows.append(_row(name, "total", totals))
    grand = [sum(run.total_seconds(n) for n in models) for run in runs]
    compare = [sum(run.seconds[n][p] for n in models for p in COMPARE_VIEW) for run in runs]
    return {
        "rows": rows,
        "all_models_median_s": statistics.median(grand),
        "compare_view_median_s": statistics.median(compare),
    }


def render(result: dict) -> str:
    """Markdown table: probes as rows, models as columns (median and min seconds)."""
    table = {(r["model"], r["probe"]): (r["median_s"], r["min_s"]) for r in result["results"]}
    lines = [
        f"# Probe sweep, CPU — {result['device']}, {result['threads']} threads, torch {result['torch']}",
        "",
        f"Prompt: {result['prompt_chars']} characters; median (min) of {result['repeats']} sweeps, seconds; "
        f"IG steps {result['attribution_steps']}; {result['date']}; 1-min load average before/after "
        f"{result['load_average_1min'][0]:.1f}/{result['load_average_1min'][1]:.1f}.",
        "",
        "| probe | " + " | ".join(MODELS) + " |",
        "| --- |" + " ---: |" * len(MODELS),
    ]
    for probe in (*SWEEP, "total"):
        cells = " | ".join(f"{table[(m, probe)][0]:.3f} ({table[(m, probe)][1]:.3f})" for m in MODELS)
        lines.append(f"| {'**total**' if probe == 'total' else probe} | {cells} |")
    lines += [
        "",
        f"All three models, every probe: **{result['all_models_median_s']:.2f} s** (median).",
        f"All three models, the Compare page's probes ({', '.join(COMPARE_VIEW)}; one shared trace per "
        f"model): **{result['compare_view_median_s']:.3f} s** (median).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Runs the sweep and writes the JSON and the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--attribution-steps", type=int, default=DEFAULT_IG_STEPS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "probe_sweep-cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    measured = measure(args.repeats, args.attribution_steps)
    result = {
        **cpu_run_header(),
        "prompt_chars": len(PROMPT),
        "repeats": args.repeats,
        "attribution_steps": args.attribution_steps,
        "results": measured["rows"],
        "all_models_median_s": measured["all_models_median_s"],
        "compare_view_median_s": measured["compare_view_median_s"],
        "load_average_1min": [load_before, os.getloadavg()[0]],
    }
    print(write_results(result, args.out, render))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
