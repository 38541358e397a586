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
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import probes
from benchmarks.harness import cpu_run_header, write_results
from benchmarks.probe_sweep import PROMPT as SHAKESPEARE
from probes.attribution import REFINEMENT_STEPS, attribution_estimates
from probes.lens import first_positions
from probes.sweep import COMPARE_VIEW

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
    """What the Compare page computes and draws for one model: loss, depth weights, stream norms and
    retrieval from one shared trace (as the page does), and its three figures."""
    from figures.depth import depth_heatmaps
    from figures.norms import norm_growth_chart
    from figures.retrieval import retrieval_summary

    traced = probes.trace(model, text)  # text, or token ids for a model without a tokenizer
    loss, dw, norms, retrieval = (
        probes.PROBES[name](model, traced) for name in ("prompt_loss", *COMPARE_VIEW)
    )
    figs = (
        depth_heatmaps([dw], ["m"]),
        norm_growth_chart([norms], ["m"]),
        retrieval_summary([retrieval], ["m"]),
    )
    return loss, figs


def _readout(model) -> int:
    return model.config.n_sublayers + 1


def _n_tokens(model, text) -> int:
    return len(probes.encode_prompt(model, text).ids) if isinstance(text, str) else int(text.shape[1])


def lens_first(model, text):
    """The Logit lens page's first result: the table's position (the last) and the last positions."""
    positions = first_positions(model, _n_tokens(model, text), -1)
    return probes.logit_lens(model, text, sources=False, positions=positions)


def lens_rest(model, text):
    """What the Logit lens page reads after its first result: every other position."""
    first = set(first_positions(model, _n_tokens(model, text), -1) or range(_n_tokens(model, text)))
    rest = [t for t in range(_n_tokens(model, text)) if t not in first]
    return probes.logit_lens(model, text, sources=False, positions=rest) if rest else None


# page -> what it computes on a first visit (the probes it asks for, as app/views call them)
PAGES: dict[str, Callable] = {
    "compare": compare_page,
    "depth": lambda m, t: probes.depth_sinks(probes.depth_weights(m, t)),
    "dilution": lambda m, t: (probes.stream_norms(m, t), probes.gradient_norms(m, t)),
    "retrieval": lambda m, t: probes.depth_retrieval(m, t),
    "lens": lens_first,
    "attribution_routes": lambda m, t: probes.route_ablation(m, t, _readout(m)),
    "ablation_click": lambda m, t: probes.ablate(m, t, _readout(m), "uniform"),
}


CPU_SECONDS: list[float] = []  # process CPU seconds of each timed call, in order (see measure_gpt2)


def timed(fn: Callable, *args) -> tuple[float, object]:
    """(wall seconds, result); the call's process CPU seconds are appended to CPU_SECONDS."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    CPU_SECONDS.append(time.process_time() - cpu)
    return time.perf_counter() - start, out


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bare_forward(model, tokens: torch.Tensor, repeats: int = 3) -> float:
    """Median seconds of a no-grad forward (its median CPU seconds appended to CPU_SECONDS)."""
    with torch.no_grad():
        model(tokens)
        walls = [timed(model, tokens)[0] for _ in range(repeats)]
    CPU_SECONDS.append(statistics.median(CPU_SECONDS[-repeats:]))
    return statistics.median(walls)


def attribution_levels(model, text: str, steps: tuple[int, ...]) -> list[dict]:
    """Each refinement level's wall and CPU time (the first includes the trace, route means, f(1), f(0))."""
    rows, start, cpu = [], time.perf_counter(), time.process_time()
    for estimate in attribution_estimates(model, text, steps=steps):
        now, now_cpu = time.perf_counter(), time.process_time()
        rows.append({"n_steps": estimate.n_steps, "seconds": now - start, "cpu_s": now_cpu - cpu,
                     "relative_error": float(estimate.relative_error()[0])})  # fmt: skip
        _log(f"attribution {estimate.n_steps} steps: {now - start:.1f} s")
        start, cpu = now, now_cpu
    return rows


def measure_gpt2(steps: tuple[int, ...], save: Callable[[dict], None]) -> dict:
    """Bare forward, each page's first result, Attribution's first estimate then its refinements,
    a Compare prompt change, bare forward again; ``save`` gets the partial result after each item
    (on a busy shared machine a run may be cut short; what was measured is kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        built, directory = timed(build_gpt2_small, Path(tmp))
        from attnres import load_model

        load_s, model = timed(load_model, directory)
    tokens = torch.tensor([probes.encode_prompt(model, PROMPT).ids])
    assert tokens.shape[1] == 256, tokens.shape
    out = {"model": "GPT-2 small (random init), HF import", "params": model.num_params(),
           "tokens": int(tokens.shape[1]), "build_s": built, "load_s": load_s}  # fmt: skip
    out["bare_forward_s"], out["bare_forward_cpu_s"] = [bare_forward(model, tokens)], [CPU_SECONDS[-1]]
    out["pages_s"], out["pages_cpu_s"], out["attribution_levels"] = {}, {}, []
    order = [
        "compare",
        "compare_prompt_change",
        "lens",
        "attribution_first",
        *PAGES.keys() - {"compare", "lens"},
    ]
    for name in order:
        if name == "attribution_first":
            out["attribution_levels"] = attribution_levels(model, PROMPT, steps[:1])
        else:
            text = SECOND_PROMPT if name == "compare_prompt_change" else PROMPT
            fn = compare_page if name == "compare_prompt_change" else PAGES[name]
            out["pages_s"][name], out["pages_cpu_s"][name] = timed(fn, model, text)[0], CPU_SECONDS[-1]
            _log(f"{name}: {out['pages_s'][name]:.1f} s")
        save(out)
    out["lens_rest_s"], out["lens_rest_cpu_s"] = timed(lens_rest, model, PROMPT)[0], CPU_SECONDS[-1]
    _log(f"lens, the other positions: {out['lens_rest_s']:.1f} s")
    save(out)
    out["bare_forward_s"].append(bare_forward(model, tokens))
    out["bare_forward_cpu_s"].append(CPU_SECONDS[-1])
    save(out)
    first = first_positions(model, int(tokens.shape[1]), -1)
    out["lens_first_positions"] = len(first) if first is not None else int(tokens.shape[1])
    out["flops"] = flops(model, int(tokens.shape[1]), out["lens_first_positions"])
    out["profile"] = {
        "lens": profile_top(lens_first, model, PROMPT),
        "attribution": profile_top(lambda: next(attribution_estimates(model, PROMPT, steps=steps[:1]))),
    }
    save(out)
    if len(steps) > 1:  # the refinement: the whole plan again, so each level follows the one before
        out["attribution_levels"] = attribution_levels(model, PROMPT, steps)
        save(out)
    return out


def flops(model, n_tokens: int, lens_positions: int) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of the matrix products: the bare forward (blocks, attention
    scores and mixes, head at every position), the lens head at ``lens_positions`` and at every
    position (every site), and one integrated-gradients step (the gated forward reading the head at
    one position, and its backward to the gates: about twice its forward)."""
    c, T = model.config, n_tokens
    vocab, d = model.lm_head.weight.shape
    blocks = (
        2
        * T
        * sum(
            p.numel()
            for n, p in model.named_parameters()
            if p.dim() == 2 and "wte" not in n and "wpe" not in n and "lm_head" not in n
        )
    )
    attention = 2 * 2 * c.n_layer * T * T * d
    head = 2 * T * d * vocab
    sites = c.n_sublayers + 1
    return {
        "forward": blocks + attention + head,
        "lens_first": 2 * sites * lens_positions * d * vocab,
        "lens_all": 2 * sites * T * d * vocab,
        "ig_step": 2 * (blocks + attention + 2 * d * vocab),
    }


def profile_top(fn: Callable, *args, n: int = 3) -> list[list]:
    """The n operators with the most self CPU time in one call of fn: [name, share of the total]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(*args)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [[e.key, e.self_cpu_time_total / total] for e in events[:n]]


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
    """Markdown: each page's first result against its goal and the bare forward (wall and CPU)."""
    if "qwen" in result:
        return _render_qwen(result)
    g = result["gpt2"]
    fwd, fwd_cpu = statistics.mean(g["bare_forward_s"]), statistics.mean(g["bare_forward_cpu_s"])
    walls = " / ".join(f"{w:.3f}" for w in g["bare_forward_s"])
    cpus = " / ".join(f"{c:.3f}" for c in g["bare_forward_cpu_s"])
    lines = [
        f"# Real-size interactivity, CPU — {result['device']}, {result['threads']} threads, "
        f"torch {result['torch']}",
        "",
        f"{g['model']}, {g['params'] / 1e6:.1f}M parameters, {g['tokens']}-token prompt; {result['date']}; "
        f"1-min load average before/after {result['load_average_1min'][0]:.1f}/"
        f"{result['load_average_1min'][1]:.1f} on {result['cores']} cores shared with other work: the wall "
        "times are inflated by it, the process CPU seconds and the ratios to the bare forward much less. "
        f"OMP_WAIT_POLICY={result['omp_wait_policy']}. Build {g['build_s']:.1f} s, load {g['load_s']:.1f} s. "
        f"Bare no-grad forward, wall (before / after): {walls} s; CPU: {cpus} s.",
        "",
        "| page (first result) | wall s | x forward | CPU s | x forward (CPU) | goal (wall s) | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def row(name, wall, cpu, goal):
        met = "yes" if wall <= goal else "no"
        lines.append(
            f"| {name} | {wall:.2f} | {wall / fwd:.1f} | {cpu:.2f} | {cpu / fwd_cpu:.1f} | {goal:g} | {met} |"
        )

    for name, wall in g["pages_s"].items():
        goal = GOALS["compare_prompt_change"] if name == "compare_prompt_change" else GOALS["page"]
        row(name, wall, g["pages_cpu_s"][name], goal)
    if g["attribution_levels"]:
        first = g["attribution_levels"][0]
        name = f"attribution first estimate ({first['n_steps']} steps)"
        row(name, first["seconds"], first["cpu_s"], GOALS["attribution_first"])
    if "lens_rest_s" in g:
        lines += [
            "",
            f"Logit lens after its first result ({g.get('lens_first_positions', '?')} positions): "
            f"the other positions {g['lens_rest_s']:.2f} s wall, {g['lens_rest_cpu_s']:.2f} CPU s "
            f"({g['lens_rest_cpu_s'] / fwd_cpu:.1f} x forward, CPU), under the progress bar.",
        ]
    lines += _why(g, fwd, fwd_cpu)
    lines += [
        "",
        "Attribution levels (each after the one before; the first includes the trace and f(0)):",
        "",
        "| steps | wall s | CPU s | x forward (CPU) | relative completeness error |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in g["attribution_levels"]:
        lines.append(
            f"| {level['n_steps']} | {level['seconds']:.2f} | {level['cpu_s']:.2f} | "
            f"{level['cpu_s'] / fwd_cpu:.1f} | {level['relative_error']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def _goals(g: dict) -> list[tuple[str, float, float, float]]:
    """(name, wall s, CPU s, goal s) of every goal measured."""
    out = [
        (
            name,
            wall,
            g["pages_cpu_s"][name],
            GOALS["compare_prompt_change" if name == "compare_prompt_change" else "page"],
        )
        for name, wall in g["pages_s"].items()
    ]
    if g["attribution_levels"]:
        first = g["attribution_levels"][0]
        out.append(
            (
                f"attribution first estimate ({first['n_steps']} steps)",
                first["seconds"],
                first["cpu_s"],
                GOALS["attribution_first"],
            )
        )
    return out


def _why(g: dict, fwd: float, fwd_cpu: float) -> list[str]:
    """Which goals were met; for each missed one, what its time is made of (FLOPs, profile)."""
    goals = _goals(g)
    met = [name for name, wall, _, goal in goals if wall <= goal]
    lines = ["", f"Goals met: {', '.join(met) or 'none'}."]
    f, prof = g.get("flops"), g.get("profile", {})
    for name, wall, cpu, goal in goals:
        if wall <= goal:
            continue
        why = (
            f"- {name} missed ({wall:.2f} s > {goal:g} s): {cpu / fwd_cpu:.1f} x the bare forward in CPU "
            f"seconds, {wall / fwd:.1f} x in wall seconds; the forward itself took {fwd:.2f} s wall"
        )
        if name == "lens" and f:
            why += (
                f"; the lens head at {g['lens_first_positions']} positions x every site is "
                f"{f['lens_first'] / 1e9:.0f} GFLOP beside the forward's {f['forward'] / 1e9:.0f} GFLOP "
                f"(every position: {f['lens_all'] / 1e9:.0f} GFLOP), plus the trace (one forward)"
            )
        if name.startswith("attribution first") and f:
            steps = g["attribution_levels"][0]["n_steps"]
            why += (
                f"; the trace and f(0) (about 2 forwards) and {steps} gradient evaluations of "
                f"{f['ig_step'] / 1e9:.0f} GFLOP each (forward {f['forward'] / 1e9:.0f} GFLOP)"
            )
        key = "lens" if name == "lens" else "attribution" if name.startswith("attribution first") else None
        if key in prof:
            why += "; profile: " + ", ".join(f"{op} {share:.0%}" for op, share in prof[key])
        lines.append(why + ".")
    return lines


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
    """Builds the model, measures, writes the JSON and the Markdown (after each item for gpt2)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("gpt2", "qwen"), default="gpt2")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--steps", default=",".join(map(str, REFINEMENT_STEPS)), help="attribution levels")
    parser.add_argument("--out", default=None, help="default benchmarks/results/realsize[-qwen]-cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = "realsize-cpu.json" if args.model == "gpt2" else "realsize-qwen-cpu.json"
    out = args.out or str(ROOT / "benchmarks" / "results" / name)
    load_before = os.getloadavg()[0]
    header = {
        **cpu_run_header(),
        "cores": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }

    def save(measured: dict) -> str:
        result = {**header, args.model: measured, "load_average_1min": [load_before, os.getloadavg()[0]]}
        return write_results(result, out, render)

    if args.model == "gpt2":
        measure_gpt2(tuple(int(n) for n in args.steps.split(",")), save)
        print(Path(out).with_suffix(".md").read_text())
    else:
        print(save(measure_qwen()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
