"""Command line: a corpus sweep of one or more checkpoints, data-parallel under torchrun.

    python -m probes.corpus sample_models/shakespeare-block --max-seqs 256 --out stats.json
    torchrun --nproc_per_node 2 -m probes.corpus MODEL --corpus notes.jsonl --max-seqs 4096

Each rank sweeps every W-th sequence; the accumulators are merged exactly, and rank 0 writes the
results (one JSON per model: ``CorpusStats.to_dict()``) and the cache. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from .sweep import DEFAULT_MAX_SEQS, DEFAULT_SEQ_LEN, SweepSettings, corpus_sweep


def parse(argv=None) -> argparse.Namespace:
    """The command's flags."""
    parser = argparse.ArgumentParser(prog="python -m probes.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="checkpoint directories")
    parser.add_argument(
        "--corpus", default=None, help="a .txt/.jsonl file, a folder of .txt, or 'heldout' (default)"
    )
    parser.add_argument("--max-seqs", type=int, default=DEFAULT_MAX_SEQS, help="at most this many sequences")
    parser.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="tokens per sequence")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gradients", action="store_true", help="also one backward per batch (Fig. 5c)")
    parser.add_argument("--no-lens", action="store_true", help="skip the logit-lens KL")
    parser.add_argument("--text-field", default="text", help="the text field of a .jsonl line")
    parser.add_argument(
        "--cache-dir", default=None, help="cache directory (default $ATTNRES_LENS_CACHE or ~/.cache)"
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument("--out", default=None, help="directory for one <model>.json per model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _start_distributed(device: str) -> tuple[int, str]:
    """(rank, device) under torchrun; (0, device) otherwise."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return 0, device
    cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return dist.get_rank(), device


def _sweep_one(path: str, args, settings: SweepSettings, rank: int, device: str):
    from attnres import load_model

    model = load_model(path, device=device)
    with tqdm(total=args.max_seqs, desc=Path(path).name, unit="seq", disable=args.quiet or rank != 0) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        cache = None if args.no_cache else (args.cache_dir or True)
        return corpus_sweep(model, args.corpus, settings, cache=cache, progress=progress)


def main(argv=None) -> int:
    """Entry point."""
    args = parse(argv)
    from attnres import CheckpointError

    from .texts import CorpusError

    rank, device = _start_distributed(args.device)
    settings = SweepSettings(
        max_seqs=args.max_seqs,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        lens=not args.no_lens,
        gradients=args.gradients,
        text_field=args.text_field,
    )
    try:
        for path in args.models:
            start = time.perf_counter()
            stats = _sweep_one(path, args, settings, rank, device)
            if rank == 0:
                name = Path(path).name
                if args.out:
                    Path(args.out).mkdir(parents=True, exist_ok=True)
                    (Path(args.out) / f"{name}.json").write_text(json.dumps(stats.to_dict()))
                seconds = round(time.perf_counter() - start, 2)
                line = {"model": name, "sequences": stats.n_sequences, "tokens": stats.n_tokens}
                print(json.dumps(line | {"loss": float(stats.loss.mean[0]), "seconds": seconds}))
    except (CheckpointError, CorpusError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
