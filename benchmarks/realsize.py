"""Real-size interactivity on CPU: every page's first result for a GPT-2-small-class model (124M).

    python -m benchmarks.realsize [--model gpt2|qwen] [--repeats 1] [--threads 2] [--out FILE.json]

The model is built offline: transformers' GPT2LMHeadModel from GPT2Config() (random init, seed 0),
saved with save_pretrained and a byte-level tokenizer.json (one token per byte) to a temporary
directory, then imported with ``attnres.load_model``. The prompt is 256 tokens (256 ASCII bytes).
Each page's first result is what the page computes with an empty cache (``PAGES``); Attribution's
first estimate and each refinement step are timed one by one; a Compare prompt change is the Compare
page's probes on a second prompt. Every time is set beside a bare no-grad forward of the same model
on the same prompt, measured in the same run before and after (ratios use their mean), and the load
average is recorded: the machine is shared, so ratios say more than seconds.

``--model qwen`` instead builds a Qwen3-0.6B-shaped Llama-family model directly as a ModelConfig (random
weights; nothing is downloaded or saved), times its build, Compare page, a prompt change and the logit
lens at the last LENS_POSITIONS positions, records the peak RSS and the estimate of one attribution
row's internals against the memory free (results/realsize-qwen-cpu.*).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import probes
from app.compute import prompt_loss
from benchmarks.harness import cpu_run_header, write_results
from benchmarks.probe_sweep import PROMPT as SHAKESPEARE
from probes.attribution import REFINEMENT_STEPS, attribution_estimates

ROOT = Path(__file__).resolve().parents[1]
PROMPT = (SHAKESPEARE + " " + SHAKESPEARE)[:256]
SECOND_PROMPT = PROMPT[128:] + PROMPT[:128]  # same length, another text
LENS_POSITIONS = 8  # the 0.6B model's lens is timed at the last few positions (its cost is per position)
GOALS = {"page": 3.0, "attribution_first": 10.0, "compare_prompt_change": 1.5}  # seconds, CPU


def build_gpt2_small(directory: Path) -> Path:
    """A random GPT-2-small HF directory (124M parameters) with a byte-level tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def compare_page(model, text):
    """What the Compare page computes and draws for one model: loss, depth weights, stream norms,
    retrieval, and its three figures."""
    from figures.depth import depth_heatmaps
    from figures.norms import norm_growth_chart
    from figures.retrieval import retrieval_summary

    if isinstance(text, str):
        loss = prompt_loss(model, text)
    else:  # token ids (a model without a tokenizer)
        with torch.no_grad():
            loss = float(model(text[:, :-1], targets=text[:, 1:]).loss)
    dw, norms = probes.depth_weights(model, text), probes.stream_norms(model, text)
    retrieval = probes.depth_retrieval(model, text)
    figs = (
        depth_heatmaps([dw], ["m"]),
        norm_growth_chart([norms], ["m"]),
        retrieval_summary([retrieval], ["m"]),
    )
    return loss, figs


def _readout(model) -> int:
    return model.config.n_sublayers + 1


# page -> what it computes on a first visit (the probes it asks for, as app/views call them)
PAGES: dict[str, Callable] = {
    "compare": compare_page,
    "depth": lambda m, t: probes.depth_sinks(probes.depth_weights(m, t)),
    "dilution": lambda m, t: (probes.stream_norms(m, t), probes.gradient_norms(m, t)),
    "retrieval": lambda m, t: probes.depth_retrieval(m, t),
    "lens": lambda m, t: probes.logit_lens(m, t, sources=False),
    "attribution_routes": lambda m, t: probes.route_ablation(m, t, _readout(m)),
    "ablation_click": lambda m, t: probes.ablate(m, t, _readout(m), "uniform"),
}


def timed(fn: Callable, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bare_forward(model, tokens: torch.Tensor, repeats: int = 3) -> float:
    """Median seconds of a no-grad forward."""
    with torch.no_grad():
        model(tokens)
        return statistics.median(timed(model, tokens)[0] for _ in range(repeats))


def attribution_levels(model, text: str) -> list[dict]:
    """Each refinement level's wall time (the first includes the trace, route means, f(1), f(0))."""
    rows, start = [], time.perf_counter()
    for estimate in attribution_estimates(model, text, steps=REFINEMENT_STEPS):
        now = time.perf_counter()
        rows.append({"n_steps": estimate.n_steps, "seconds": now - start,
                     "relative_error": float(estimate.relative_error()[0])})  # fmt: skip
        start = now
    return rows


def measure_gpt2(repeats: int) -> dict:
    """Every page's first result, the attribution levels and a Compare prompt change, with bare forwards."""
    with tempfile.TemporaryDirectory() as tmp:
        built, directory = timed(build_gpt2_small, Path(tmp))
        from attnres import load_model

        load_s, model = timed(load_model, directory)
    tokens = torch.tensor([probes.encode_prompt(model, PROMPT).ids])
    assert tokens.shape[1] == 256, tokens.shape
    forward_before = bare_forward(model, tokens)
    pages = {}
    for name, fn in PAGES.items():
        samples = [timed(fn, model, PROMPT)[0] for _ in range(repeats)]
        pages[name] = statistics.median(samples)
    levels = attribution_levels(model, PROMPT)
    change = statistics.median(timed(compare_page, model, SECOND_PROMPT)[0] for _ in range(repeats))
    forward_after = bare_forward(model, tokens)
    return {
        "model": "GPT-2 small (random init), HF import",
        "params": model.num_params(),
        "tokens": int(tokens.shape[1]),
        "build_s": built,
        "load_s": load_s,
        "bare_forward_s": [forward_before, forward_after],
        "pages_s": pages,
        "attribution_levels": levels,
        "compare_prompt_change_s": change,
    }


def qwen3_shape():
    """A ModelConfig of the Qwen3-0.6B shape (Llama-family block), PreNorm."""
    from attnres import ModelConfig

    return ModelConfig(
        vocab_size=151936, block_size=40960, n_layer=28, n_head=16, d_model=1024, n_kv_head=8,
        head_dim=128, d_mlp=3072, position="rope", rope_theta=1e6, mlp="gated", activation="silu",
        qk_norm=True, tie_embeddings=True,
    )  # fmt: skip


def measure_qwen() -> dict:
    """Build (random weights) and the Compare page of a Qwen3-0.6B-shaped model, with peak RSS."""
    from attnres import Model
    from attnres.lab_limits import available_memory
    from probes.attribution import row_bytes

    torch.manual_seed(0)
    built, model = timed(lambda: Model(qwen3_shape()).eval())
    tokens = torch.randint(0, 151936, (1, 256))
    forward = bare_forward(model, tokens, repeats=1)
    compare, _ = timed(compare_page, model, tokens)
    change, _ = timed(compare_page, model, torch.randint(0, 151936, (1, 256)))
    lens, _ = timed(
        lambda: probes.logit_lens(model, tokens, sources=False, positions=range(-LENS_POSITIONS, 0))
    )
    return {
        "model": "Qwen3-0.6B shape (random init), built as a ModelConfig",
        "params": model.num_params(),
        "tokens": 256,
        "build_s": built,
        "bare_forward_s": forward,
        "compare_s": compare,
        "compare_prompt_change_s": change,
        "lens_positions": LENS_POSITIONS,
        "lens_s": lens,
        "attribution_row_bytes": row_bytes(model, 256),
        "available_bytes": available_memory(torch.device("cpu")),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def render(result: dict) -> str:
    """Markdown: each page's first result against its goal and the bare forward."""
    if "qwen" in result:
        return _render_qwen(result)
    g = result["gpt2"]
    fwd = sum(g["bare_forward_s"]) / 2
    lines = [
        f"# Real-size interactivity, CPU — {result['device']}, {result['threads']} threads, "
        f"torch {result['torch']}",
        "",
        f"{g['model']}, {g['params'] / 1e6:.1f}M parameters, {g['tokens']}-token prompt; {result['date']}; "
        f"1-min load average before/after {result['load_average_1min'][0]:.1f}/"
        f"{result['load_average_1min'][1]:.1f} on {os.cpu_count()} cores (shared: read the ratios). "
        f"Build {g['build_s']:.1f} s, load {g['load_s']:.1f} s. Bare no-grad forward (before/after): "
        f"{g['bare_forward_s'][0]:.3f} / {g['bare_forward_s'][1]:.3f} s.",
        "",
        "| page (first result) | seconds | x bare forward | goal (s) | met |",
        "| --- | ---: | ---: | ---: | --- |",
    ]

    def row(name, seconds, goal):
        met = "yes" if seconds <= goal else "no"
        lines.append(f"| {name} | {seconds:.2f} | {seconds / fwd:.1f} | {goal:g} | {met} |")

    for name, seconds in g["pages_s"].items():
        row(name, seconds, GOALS["page"])
    first = g["attribution_levels"][0]
    row(
        f"attribution first estimate ({first['n_steps']} steps)", first["seconds"], GOALS["attribution_first"]
    )
    row("Compare prompt change", g["compare_prompt_change_s"], GOALS["compare_prompt_change"])
    lines += ["", "Attribution refinement (each level after the previous):", "",
              "| steps | seconds | x bare forward | relative completeness error |",
              "| ---: | ---: | ---: | ---: |"]  # fmt: skip
    for level in g["attribution_levels"]:
        lines.append(f"| {level['n_steps']} | {level['seconds']:.2f} | {level['seconds'] / fwd:.1f} | "
                     f"{level['relative_error']:.1e} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _render_qwen(result: dict) -> str:
    q = result["qwen"]
    return "\n".join([
        f"# Qwen3-0.6B-shaped model on CPU — {result['device']}, {result['threads']} threads, "
        f"torch {result['torch']}",
        "",
        f"{q['model']}: {q['params'] / 1e6:.0f}M parameters, {q['tokens']} tokens; {result['date']}; "
        f"1-min load average before/after {result['load_average_1min'][0]:.1f}/"
        f"{result['load_average_1min'][1]:.1f}.",
        "",
        "| what | seconds | x bare forward |",
        "| --- | ---: | ---: |",
        f"| build (random init) | {q['build_s']:.2f} | |",
        f"| bare no-grad forward | {q['bare_forward_s']:.2f} | 1.0 |",
        f"| Compare page | {q['compare_s']:.2f} | {q['compare_s'] / q['bare_forward_s']:.1f} |",
        f"| Compare prompt change | {q['compare_prompt_change_s']:.2f} | "
        f"{q['compare_prompt_change_s'] / q['bare_forward_s']:.1f} |",
        f"| logit lens, sites, last {q['lens_positions']} positions | {q['lens_s']:.2f} | "
        f"{q['lens_s'] / q['bare_forward_s']:.1f} |",
        "",
        f"Peak RSS {q['peak_rss_bytes'] / 2**30:.1f} GiB (goal: within 24 GiB). One attribution row of "
        f"{q['tokens']} tokens needs about {q['attribution_row_bytes'] / 2**30:.1f} GiB of internals by "
        f"probes.attribution.row_bytes ({q['available_bytes'] / 2**30:.1f} GiB were free).",
    ]) + "\n"  # fmt: skip


def main(argv=None) -> int:
    """Builds the model, measures, writes the JSON and the Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("gpt2", "qwen"), default="gpt2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=None, help="default benchmarks/results/realsize[-qwen]-cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = "realsize-cpu.json" if args.model == "gpt2" else "realsize-qwen-cpu.json"
    out = args.out or str(ROOT / "benchmarks" / "results" / name)
    load_before = os.getloadavg()[0]
    result = {**cpu_run_header(), "repeats": args.repeats}
    result[args.model] = measure_gpt2(args.repeats) if args.model == "gpt2" else measure_qwen()
    result["load_average_1min"] = [load_before, os.getloadavg()[0]]
    print(write_results(result, out, render))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
