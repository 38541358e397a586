"""Corpus sweep cost against a bare forward of the same model on the same batches (CPU).

    python -m benchmarks.corpus_sweep [--seqs 32] [--repeats 7] [--out results/corpus_sweep-cpu.json]

For each shipped model: the default corpus (held-out plays) cut into ``--seqs`` sequences of 256
tokens, batch 8. Four steps over the same batches, timed in one loop in an order that rotates each
round (machine load hits them alike): the bare ``torch.no_grad()`` forward ``model(tokens)``; the whole
``probes.corpus.corpus_sweep`` without gradients (internals, every accumulator, the logit-lens KL, the
fingerprint and the final result; no cache); the same with gradients (one backward per batch); and, as
the profile of the second, the sweep without the logit lens (what the lens's L readouts cost).
Goals: sweep <= 1.3x the bare forward, with gradients <= 3.5x. Medians are reported.
Then, once per model, the default corpus view cold: what the dashboard's Evidence switch runs first
(the held-out plays, ``SweepSettings()``: 128 sequences of 256 tokens, into an empty cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from attnres import load_model
from benchmarks.harness import cpu_run_header, write_results
from probes.corpus import SweepCache, SweepSettings, corpus_sweep, load_sequences

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("prenorm", "full", "block")
GOALS = {"sweep": 1.3, "sweep+gradients": 3.5}
BATCH = 8
PROFILE = (
    "Where the time goes: the 'sweep without lens' column is the sweep less the logit lens (one readout "
    "per site but the last, which reuses the model's logits). What remains over the bare forward is the "
    "recorded internals and a few dozen small per-token reductions per batch (RMS of every source and "
    "input, the weights' entropy and maximum, the update shares, the accumulators), plus per-sweep fixed "
    "costs (fingerprint, result) that one batch does not amortise. On a loaded machine each small op "
    "waits for both threads, so these ratios grow with the load; `torch.profiler` or cProfile of "
    "`corpus_sweep` (one thread, CPU time) shows the same parts."
)


def steps_for(model, seqs) -> dict:
    """name -> zero-argument step over every batch of seqs."""

    def bare():
        with torch.no_grad():
            for i in range(0, len(seqs), BATCH):
                model(seqs.tokens[i : i + BATCH])

    plain = SweepSettings(max_seqs=len(seqs), batch_size=BATCH)
    grads = SweepSettings(max_seqs=len(seqs), batch_size=BATCH, gradients=True)
    no_lens = SweepSettings(max_seqs=len(seqs), batch_size=BATCH, lens=False)
    return {
        "bare forward": bare,
        "sweep": lambda: corpus_sweep(model, seqs, plain),
        "sweep+gradients": lambda: corpus_sweep(model, seqs, grads),
        "sweep without lens": lambda: corpus_sweep(model, seqs, no_lens),
    }


def time_model(name: str, n_seqs: int, repeats: int) -> dict:
    model = load_model(ROOT / "sample_models" / f"shakespeare-{name}")
    seqs = load_sequences(model, None, 256, n_seqs)
    steps = steps_for(model, seqs)
    for step in steps.values():
        step()  # warm-up
    names, samples = list(steps), {n: [] for n in steps}
    for r in range(repeats):
        for i in range(len(names)):
            key = names[(r + i) % len(names)]
            start = time.perf_counter()
            steps[key]()
            samples[key].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "model": name,
        "sequences": len(seqs),
        "tokens": seqs.n_tokens,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "tokens_per_s": {k: round(seqs.n_tokens / v, 1) for k, v in medians.items()},
        "ratio": {k: round(medians[k] / medians["bare forward"], 3) for k in medians if k != "bare forward"},
    }


def default_view(name: str) -> dict:
    """The default corpus view of one model, cold: sequences, tokens and wall seconds."""
    model = load_model(ROOT / "sample_models" / f"shakespeare-{name}")
    settings = SweepSettings()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        seqs = load_sequences(
            model, "heldout", min(settings.seq_len, model.config.block_size), settings.max_seqs
        )
        stats = corpus_sweep(model, seqs, settings, cache=SweepCache(cache))
        seconds = time.perf_counter() - start
    return {
        "model": name,
        "sequences": stats.n_sequences,
        "tokens": stats.n_tokens,
        "wall_s": round(seconds, 2),
    }


def render(report: dict) -> str:
    """The results JSON as Markdown."""
    lines = [
        "# Corpus sweep vs bare forward (python -m benchmarks.corpus_sweep)",
        "",
        f"{report['device']} ({report['threads']} threads), torch {report['torch']}, {report['date']}; "
        f"held-out plays, {report['sequences']} sequences x 256 tokens, batch {BATCH}, fp32, median of "
        f"{report['repeats']} interleaved repeats; "
        f"1-min load average before/after {report['load_average_1min']}.",
        "",
        "| model | bare forward tok/s | sweep tok/s | sweep+gradients tok/s | sweep ratio (goal 1.3) "
        "| +gradients ratio (goal 3.5) | sweep without lens ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        t, q = r["tokens_per_s"], r["ratio"]
        lines.append(
            f"| {r['model']} | {t['bare forward']:,.0f} | {t['sweep']:,.0f} | {t['sweep+gradients']:,.0f} "
            f"| {q['sweep']:.3f} | {q['sweep+gradients']:.3f} | {q['sweep without lens']:.3f} |"
        )
    missed = [f"{r['model']} {goal} ({r['ratio'][goal]:.2f}x > {limit}x)" for r in report["results"]
              for goal, limit in GOALS.items() if r["ratio"][goal] > limit]  # fmt: skip
    lines += ["", "Goals missed: " + ("; ".join(missed) if missed else "none") + "."]
    lines += ["", PROFILE]
    lines += ["", "Default corpus view, cold (held-out plays, `SweepSettings()`, empty cache):", ""]
    lines += [f"- {v['model']}: {v['sequences']} sequences · {v['tokens']:,} tokens in {v['wall_s']:.1f} s"
              for v in report.get("default_view", [])]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "corpus_sweep-cpu.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for name in MODELS:
        rows.append(time_model(name, args.seqs, args.repeats))
        print(rows[-1], file=sys.stderr, flush=True)
    report = {
        **cpu_run_header(),
        "sequences": args.seqs,
        "repeats": args.repeats,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "goals": GOALS,
        "results": rows,
        "default_view": [default_view(name) for name in MODELS],
    }
    print(write_results(report, args.out, render))


if __name__ == "__main__":
    main()
