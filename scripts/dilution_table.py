"""The signal-dilution metrics of trained models on held-out text, as JSON and a Markdown table.

    python scripts/dilution_table.py sample_models/shakespeare-{prenorm,full,block} --out dilution

For each model (and each of its snapshots with --snapshots): ``probes.dilution_metrics`` on two
held-out inputs, one context window of Hamlet III.i and the model card's validation slice (the first
``--eval-windows`` windows of the held-out plays), next to the validation loss of the stored weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnres import load_model  # noqa: E402
from attnres.data import fixed_windows, held_out_passage, heldout_loss, load_corpus  # noqa: E402
from probes import dilution_metrics  # noqa: E402

FIELDS = ("growth", "deeper_half_share", "output_depth_spearman", "gradient_first_last")


def measure(path: Path, corpus, eval_windows: int) -> dict:
    """Validation loss and the dilution metrics on both inputs for the checkpoint at path."""
    model = load_model(path)
    ctx = model.config.block_size
    scene = model.tokenizer.encode(held_out_passage(ctx))
    x, _ = fixed_windows(corpus.val, ctx, eval_windows)
    row = {"model": str(path), "val_loss": round(heldout_loss(model, corpus.val, eval_windows), 4)}
    for name, inputs in (("hamlet", torch.tensor([scene])), ("val", x)):
        metrics = dilution_metrics(model, inputs)
        row.update({f"{name}_{f}": round(getattr(metrics, f), 4) for f in FIELDS})
    return row


def markdown(rows: list[dict]) -> str:
    """One row per checkpoint: loss, then each metric on Hamlet III.i / on the validation slice."""
    head = "| model | val loss | " + " | ".join(f"{f} (Hamlet / val)" for f in FIELDS) + " |"
    lines = [head, "|" + " --- |" * (2 + len(FIELDS))]
    for r in rows:
        cells = [f"{r[f'hamlet_{f}']} / {r[f'val_{f}']}" for f in FIELDS]
        lines.append(f"| {r['model']} | {r['val_loss']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--snapshots", action="store_true", help="also every snapshot under each model")
    parser.add_argument("--eval-windows", type=int, default=32)
    parser.add_argument("--out", type=Path, help="writes OUT.json and OUT.md (else prints the table)")
    args = parser.parse_args(argv)
    corpus, paths = load_corpus(), []
    for path in args.models:
        paths.append(path)
        if args.snapshots:
            paths += sorted((path / "snapshots").glob("step-*"))
    rows = [measure(p, corpus, args.eval_windows) for p in paths]
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
