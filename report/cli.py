"""Command-line report: every probe on one or more checkpoints, as one offline HTML page plus the numbers.

    python -m report sample_models/shakespeare-{prenorm,full,block} --prompt "To be" --out report-out

writes ``DIR/report.html`` (self-contained: plotly.js inlined once, no network), ``DIR/json/<model>/
<probe>.json`` (every probe result), ``DIR/models.json``, ``DIR/summary.csv`` (one row per model and
site), ``DIR/blocks.csv`` (one row per model and Transformer block) and ``DIR/timings.csv``.
It sits above ``probes`` (the measurements) and ``figures`` (the plotly builders) and uses both;
``python -m probes.report`` is an alias of it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from attnres.safety import safe_name
from probes.attribution import DEFAULT_IG_STEPS
from probes.sweep import SWEEP, full_sweep

CSS = """
body { font-family: Inter, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } pre { background: #f8f8f8; padding: .6em; white-space: pre-wrap; }
.note { color: #555; font-size: .9em; } nav a { margin-right: 1em; }
"""


def _file_name(name: str) -> str:
    """A model name made safe as a file or directory name."""
    return safe_name(name).strip("._") or "model"


def model_names(paths) -> list[str]:
    """Display names: each checkpoint directory's name, made unique with a suffix."""
    names: list[str] = []
    for path in paths:
        path = Path(path)
        base = (path if path.is_dir() else path.parent).name or "model"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def _table(rows: list[dict]) -> str:
    """HTML table of rows whose string cells are already escaped (figure tables, or ours escaped)."""
    if not rows:
        return '<p class="note">none</p>'
    header = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_esc(k)}</th>" for k in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{'' if row.get(k) is None else row.get(k)}</td>" for k in header) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _esc(text) -> str:
    from figures.style import safe_text

    return safe_text(text)


def _model_rows(models: dict, paths: list[str]) -> list[dict]:
    rows = []
    for (name, model), path in zip(models.items(), paths, strict=True):
        config = model.config
        report = model.import_report
        rows.append(
            {
                "model": _esc(name),
                "path": _esc(path),
                "residual": _esc(config.residual)
                + (f" (S={config.attnres_block_size})" if config.residual == "block" else ""),
                "layers": f"{config.n_layer} blocks = {config.n_sublayers} sublayers, d={config.d_model}",
                "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
                "fingerprint": f"<code>{_esc(config.fingerprint())}</code>",
                "import report": f"<pre>{_esc(report.summary())}</pre>" if report is not None else "",
            }
        )
    return rows


def _prompt_html(sweep) -> str:
    parts = []
    for name, prompt in sweep.prompts.items():
        notices = "".join(f"<li>{_esc(n)}</li>" for n in prompt.notices)
        parts.append(
            f"<p><b>{_esc(name)}</b>: {len(prompt.ids)} tokens</p><pre>{_esc(prompt.text)}</pre>"
            + (f"<ul class='note'>{notices}</ul>" if notices else "")
        )
    return "".join(parts)


def _figure_sections(sweep, names: list[str], tokenizers: dict) -> list[tuple[str, str, list]]:
    """(anchor, heading, items) per section; items are figures or HTML strings."""
    import figures as F

    r = sweep.results
    dws = [r[n]["depth_weights"] for n in names]
    norms = [r[n]["stream_norms"] for n in names]
    retrievals = [r[n]["depth_retrieval"] for n in names]
    depth_items = [F.depth_heatmaps(dws, names, panel) for panel in ("attn", "mlp", "all")]
    depth_items += [F.entropy_chart(dws, names), "<h3>Depth-attention sinks (§6.2)</h3>"]
    depth_items += [
        _table([{"model": _esc(n), **row} for row in F.sinks_table(r[n]["depth_sinks"])]) for n in names
    ]
    lens_items, attribution_items = [], []
    for n in names:
        prompt = sweep.prompts[n]
        lens = r[n]["logit_lens"]
        lens_items += [F.logit_lens_heatmap(lens, "target_rank", n, prompt.tokens, tokenizers[n])]
        lens_items += [f"<h3>{_esc(n)}: predictions at the last token</h3>"]
        lens_items += [_table(F.logit_lens_table(lens, -1, tokenizers[n]))]
        attr = r[n]["gate_attribution"]
        routes = r[n].get("route_ablation")
        attribution_items += [F.attribution_vs_weight(attr, int(attr.sites[-1]), ablation=routes)]
        attribution_items += [F.attribution_heatmap(attr)]
        attribution_items += [F.ablation_chart(list(r[n]["ablate"]))]
    return [
        ("depth", "Depth-attention weights (Fig. 8)", depth_items),
        (
            "norms",
            "Stream magnitude and signal dilution",
            [F.norm_growth_chart(norms, names), F.update_share_chart(norms, names)],
        ),
        ("fig5b", "Output magnitude per block (Fig. 5b)", [F.block_output_chart(norms, names)]),
        (
            "fig5c",
            "Gradient magnitude per block (Fig. 5c)",
            [F.gradient_chart([r[n]["gradient_norms"] for n in names], names)],
        ),
        (
            "retrieval",
            "Who reads whom (layer graphs, Fig. 9 mixing matrices)",
            [F.retrieval_graph(x, 0.1, n) for x, n in zip(retrievals, names, strict=True)]
            + [F.mixing_matrix(x, n) for x, n in zip(retrievals, names, strict=True)]
            + [_table(F.retrieval_summary(retrievals, names))],
        ),
        ("lens", "Logit lens", lens_items),
        ("attribution", "Attribution and ablation for the last token", attribution_items),
    ]


def corpus_section(stats: dict) -> tuple[str, str, list]:
    """The corpus section: corpus-mean routing and its spread, bands, sinks with their spread."""
    import figures.corpus as FC
    from probes.corpus import corpus_sinks

    names, values = list(stats), list(stats.values())
    items = [f'<p class="note">{_esc(values[0].corpus)}: {FC.evidence_note(values)} per model; '
             "bands and ± are 95% t-intervals over sequences.</p>"]  # fmt: skip
    items += [FC.corpus_heatmaps(values, names, view) for view in ("mean", "seq_std")]
    items += [FC.band_chart(values, names, "input_rms", "Stream magnitude RMS(h_l)", "site l", "RMS", True)]
    items += [FC.collapse_chart(values, names), FC.alpha_rms_chart(values, names)]
    items += [FC.band_chart(values, names, "block_output_rms", "Fig. 5b over the corpus", "block", "RMS")]
    items.append("<h3>Depth-wise sinks over the corpus (§6.2)</h3>")
    items += [_table([{"model": _esc(n), **row} for row in FC.corpus_sinks_table(corpus_sinks(s))])
              for n, s in stats.items()]  # fmt: skip
    return ("corpus", "Over the corpus", items)


def render_html(sweep, models: dict, paths: list[str], prompt: str, corpus: dict | None = None) -> str:
    """The whole report page: plotly.js inlined once in the head, every figure as a div after it."""
    from plotly.offline import get_plotlyjs

    from figures import to_html

    names = list(models)
    tokenizers = {n: getattr(m, "tokenizer", None) for n, m in models.items()}
    sections = [
        ("models", "Models", [_table(_model_rows(models, paths)), "<h3>Prompt</h3>", _prompt_html(sweep)])
    ]
    sections += _figure_sections(sweep, names, tokenizers)
    if corpus:
        sections.append(corpus_section(corpus))
    timing_rows = [{"model": _esc(n), **{p: f"{s:.3f}" for p, s in sweep.seconds[n].items()}} for n in names]
    sections.append(("timings", "Probe wall times (s)", [_table(timing_rows)]))
    nav = "".join(f'<a href="#{anchor}">{heading}</a>' for anchor, heading, _ in sections)
    body = []
    for anchor, heading, items in sections:
        body.append(f'<h2 id="{anchor}">{heading}</h2>')
        for item in items:
            body.append(
                item if isinstance(item, str) else to_html(item, full_html=False, include_plotlyjs=False)
            )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>AttnRes Lens report</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>AttnRes Lens report</h1><p>Prompt: <code>{_esc(prompt[:200])}</code>"
        f"{'…' if len(prompt) > 200 else ''}</p><nav>{nav}</nav>{''.join(body)}</body></html>\n"
    )


def _summary_rows(sweep) -> list[dict]:
    """One row per model and site: the per-site numbers of every probe."""
    rows = []
    for name, r in sweep.results.items():
        dw, retrieval, lens = r["depth_weights"], r["depth_retrieval"], r["logit_lens"]
        grads, norms = r["gradient_norms"], r["stream_norms"]
        for i, (site, kind) in enumerate(zip(dw.sites, dw.kinds, strict=True)):
            rows.append(
                {
                    "model": name,
                    "residual": dw.residual,
                    "site": int(site),
                    "kind": kind,
                    "input_rms": float(norms.input_rms_mean[i]),
                    "depth_entropy": float(dw.entropy[i]),
                    "top_sources": " ".join(retrieval.top_labels[i]),
                    "stream_grad_norm": float(grads.stream_grad_norm_mean[i]),
                    "lens_kl": float(lens.kl_mean[i]),
                    "lens_entropy": float(lens.entropy_mean[i]),
                    "lens_target_rank": float(lens.target_rank_mean[i]),
                    "loss": grads.loss,
                }
            )
    return rows


def _block_rows(sweep) -> list[dict]:
    """One row per model and Transformer block: Fig. 5b and Fig. 5c numbers."""
    rows = []
    for name, r in sweep.results.items():
        norms, grads = r["stream_norms"], r["gradient_norms"]
        for i, value in enumerate(norms.block_output_rms):
            rows.append(
                {
                    "model": name,
                    "block": i + 1,
                    "output_rms": float(value),
                    "update_rms": float(norms.block_update_rms[i]),
                    "param_grad_norm": float(grads.block_param_grad_norm[i]),
                }
            )
    return rows


def write_numbers(sweep, models: dict, paths: list[str], out: Path) -> None:
    """One JSON per probe per model, models.json, and the summary/blocks/timings CSVs."""
    from figures import to_csv, to_json

    for name, results in sweep.results.items():
        folder = out / "json" / _file_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        for probe, result in results.items():
            (folder / f"{probe}.json").write_text(to_json(result))
        (folder / "prompt.json").write_text(to_json(sweep.prompts[name].to_dict()))
    info = {
        name: {
            "path": path,
            "config": model.config.to_dict(),
            "fingerprint": model.config.fingerprint(),
            "import_report": model.import_report.summary() if model.import_report else None,
        }
        for (name, model), path in zip(models.items(), paths, strict=True)
    }
    (out / "models.json").write_text(to_json(info, indent=2))
    (out / "summary.csv").write_text(to_csv(_summary_rows(sweep)))
    (out / "blocks.csv").write_text(to_csv(_block_rows(sweep)))
    timings = [
        {"model": n, "probe": p, "seconds": s} for n in sweep.seconds for p, s in sweep.seconds[n].items()
    ]
    (out / "timings.csv").write_text(to_csv(timings))


def _corpus_stats(models: dict, corpus, max_seqs: int, out: Path, progress: bool) -> dict:
    """Each model's corpus sweep (from the cache when there), also written as json/<model>/corpus.json."""
    from figures import to_json
    from probes.corpus import SweepSettings, corpus_sweep

    stats = {}
    for name, model in models.items():
        with tqdm(total=max_seqs, desc=f"corpus {name}", unit="seq", disable=not progress) as bar:
            settings = SweepSettings(max_seqs=max_seqs)
            step = lambda done, total, bar=bar: bar.update(done - bar.n)  # noqa: E731
            stats[name] = corpus_sweep(model, corpus, settings, cache=True, progress=step)
        folder = out / "json" / _file_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "corpus.json").write_text(to_json(stats[name]))
    return stats


def build_report(
    paths,
    prompt: str,
    out,
    attribution_steps: int = DEFAULT_IG_STEPS,
    device: str = "cpu",
    progress=True,
    corpus=None,
    max_seqs: int | None = None,
) -> Path:
    """Loads the checkpoints, runs every probe, writes the page and the numbers; returns report.html.

    Args:
        paths: checkpoint directories (or files inside them; any format ``attnres.load_model`` reads).
        prompt: the text every probe runs on (at least two tokens).
        out: output directory (created).
        attribution_steps: integrated-gradients steps for the last-token attribution.
        device: where the models run.
        progress: show a tqdm progress bar over probes on stderr.
        corpus: also sweep this corpus (``probes.corpus``; "heldout" for the held-out plays), cached.
        max_seqs: sequences of the corpus sweep (default 128); given alone, sweeps the held-out plays.
    """
    from attnres import load_model

    paths = [str(p) for p in paths]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = {
        name: load_model(path, device=device) for name, path in zip(model_names(paths), paths, strict=True)
    }
    with tqdm(total=len(models) * len(SWEEP), desc="probes", unit="probe", disable=not progress) as bar:

        def step(name: str, probe: str) -> None:
            bar.set_postfix_str(f"{name}: {probe} done")
            bar.update(1)

        sweep = full_sweep(models, prompt, attribution_steps=attribution_steps, on_step=step)
    write_numbers(sweep, models, paths, out)
    stats = None
    if corpus is not None or max_seqs is not None:
        stats = _corpus_stats(models, corpus, max_seqs or 128, out, progress)
    page = out / "report.html"
    page.write_text(render_html(sweep, models, paths, prompt, stats), encoding="utf-8")
    return page


def main(argv=None) -> int:
    """Entry point of ``python -m report`` (and its alias ``python -m probes.report``)."""
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="checkpoint directories")
    parser.add_argument("--prompt", required=True, help="text to run every probe on")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--attribution-steps", type=int, default=DEFAULT_IG_STEPS, help="integrated-gradients steps"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--corpus", default=None, help="also sweep a corpus: heldout, a .txt/.jsonl or folder"
    )
    parser.add_argument("--max-seqs", type=int, default=None, help="sequences of the corpus sweep (128)")
    args = parser.parse_args(argv)
    from attnres import CheckpointError
    from probes.corpus import CorpusError
    from probes.prompt import PromptError

    start = time.perf_counter()
    try:
        page = build_report(args.models, args.prompt, args.out, args.attribution_steps, args.device,
                            not args.quiet, args.corpus, args.max_seqs)  # fmt: skip
    except (CheckpointError, PromptError, CorpusError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {page} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
