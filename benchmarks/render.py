"""Markdown tables from a benchmark results JSON (DESIGN.md §5).

python -m benchmarks.render                      # every benchmarks/results/*.json
python -m benchmarks.render path/to/run.json     # just these
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = ("shape", "residual", "S", "depth_impl", "dtype", "batch x seq", "median ms", "tokens/s",
           "peak MB", "vs PreNorm")  # fmt: skip


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _row(r: dict) -> str:
    cells = (r["shape"], r["residual"], r["attnres_block_size"] or "", r["depth_impl"], r["dtype"],
             f"{r['batch']} x {r['seq']}", _num(r["median_ms"], 2), _num(r["tokens_per_s"], 0),
             _num(r["peak_mem_mb"], 0), _num(r["ratio_vs_prenorm"], 3))  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _results_tables(results: list[dict]) -> list[str]:
    lines = []
    titles = {"inference": "Forward pass (no_grad)", "train": "Training step (fwd + bwd + AdamW)"}
    for phase, title in titles.items():
        rows = [r for r in results if r["phase"] == phase]
        if rows:
            lines += [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
            lines += [_row(r) for r in rows] + [""]
    return lines


def _targets_table(targets: list[dict]) -> list[str]:
    lines = ["## Targets", "", "| target | limit | measured | best path | met | margin | detail |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for t in targets:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        cells = (t["target"], t["limit"], _num(t["measured"], 3), t["impl"] or "–", met, t["margin"] or "–",
                 t["detail"])  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines + [""]


def _kernel_table(rows: list[dict]) -> list[str]:
    lines = ["## Depth-attention kernel alone (fp32 sources; `copy` = device copy of the same sources)", "",
             "| case | K | N | d | G | impl | median ms | GB/s |", "|---" * 8 + "|"]  # fmt: skip
    for r in rows:
        cells = (
            r["case"],
            r["K"],
            r["N"],
            r["d"],
            r["G"],
            r["impl"],
            _num(r["median_ms"], 3),
            _num(r["gb_per_s"], 0),
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines + [""]


def _extras(result: dict) -> list[str]:
    lines = _kernel_table(result["kernel"]) if result.get("kernel") else []
    probe = result.get("probe_sweep") or {}
    if probe:
        lines += ["## Probe sweep", ""]
        if probe.get("status") == "ok":
            where = f"a {probe['prompt_chars']}-character prompt, `{probe['shape']}` models"
            where += "" if probe.get("warm", True) else ", one cold sweep"
            lines += [f"`{probe['function']}` on {where}:", ""]
            for r in probe["rows"]:
                parts = ", ".join(f"{name} {ms:.0f}" for name, ms in r["probes_ms"].items())
                compare = (
                    f"; Compare page's probes {r['compare_view_ms']:.0f} ms" if "compare_view_ms" in r else ""
                )
                lines.append(f"- {r['residual']}: {r['median_ms']:.0f} ms ({parts}){compare}")
        else:
            lines.append(f"{probe.get('status')}: {probe.get('note')}")
        lines.append("")
    if result.get("checks"):
        lines += ["## Depth paths vs sequential (max |logit difference|)", ""]
        lines += [f"- {c['shape']} {c['residual']} {c['depth_impl']}: {c['max_abs_diff_vs_sequential']:.2e} "
                  f"(max |logit| {c['max_abs_logit']:.2f})" for c in result["checks"]]  # fmt: skip
        lines.append("")
    for key in ("notes", "errors"):
        if result.get(key):
            lines += [f"## {key.capitalize()}", ""] + [f"- {n}" for n in result[key]] + [""]
    return lines


def render(result: dict) -> str:
    """The Markdown report of one results dict."""
    title = f"# Benchmark: {result['device']}" + (
        f" — {result['title_note']}" if result.get("title_note") else ""
    )
    head = [title, "",
            f"torch {result['torch']}, triton {result.get('triton') or '–'}, dtype {result['dtype']}, "
            f"{result['date']}{', quick run' if result.get('quick') else ''}"
            f"{', wall ' + format(result['wall_s'], '.0f') + ' s' if result.get('wall_s') else ''}.", "",
            "Times are medians of interleaved repeats after warm-up; `vs PreNorm` divides by the PreNorm row "
            "of the same shape and phase (compiled rows by compiled PreNorm). Peak memory is per step as if "
            "the variant ran alone (CUDA only).", ""]  # fmt: skip
    body = _results_tables(result["results"]) + _targets_table(result.get("targets", [])) + _extras(result)
    return "\n".join(head + body).rstrip() + "\n"


# Results files written by the other benchmark scripts: file-name prefix -> (module, its renderer).
OTHER_RENDERERS = {
    "probe_sweep": ("benchmarks.probe_sweep", "render"),
    "ig_convergence": ("benchmarks.ig_convergence", "render"),
    "cpu_forward_ratio": ("benchmarks.cpu_forward_ratio", "markdown"),
    "corpus_sweep": ("benchmarks.corpus_sweep", "render"),
    "profile-": ("benchmarks.profile_report", "render"),
    "realsize": ("benchmarks.realsize", "render"),
    "first_view": ("benchmarks.first_view", "render"),
    "soak": ("benchmarks.soak", "render"),
    "throughput": ("benchmarks.throughput", "render"),
}


def renderer_for(path: Path):
    """The function that turns this results JSON into its Markdown (by the file name's prefix)."""
    import importlib  # noqa: PLC0415

    for prefix, (module, name) in OTHER_RENDERERS.items():
        if path.name.startswith(prefix):
            return getattr(importlib.import_module(module), name)
    return render


def main(argv: list[str] | None = None) -> None:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or sorted(RESULTS.glob("*.json"))
    for path in paths:
        text = renderer_for(path)(json.loads(path.read_text()))
        path.with_suffix(".md").write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
