"""Train a character-level model on the Shakespeare corpus.

    python -m attnres.train --residual block --attnres-block-size 4 --out runs/block
    torchrun --nproc_per_node 2 -m attnres.train ...        # data parallel (gloo on CPU, nccl on GPU)

AdamW with linear warm-up and cosine decay (or warm-up, a stable phase and a decay at the end:
``--schedule wsd``), a fixed seed for the weights and (separately) for the data order, periodic
validation on a fixed held-out slice, snapshots in our checkpoint format and a ``train_log.csv`` with
per-block gradient norms (the quantity of the paper's Fig. 5c).

A run is resumable (``attnres.train_state``): ``--checkpoint-every N`` keeps the weights, the
optimizer and the data order's generator under ``OUT/resume/`` every N steps, and ``--resume``
continues from there (and from the log's rows up to that step) to the same weights as an
uninterrupted run. ``--stop-after N`` ends this process after N steps (a time-boxed share of a long
run), leaving the resume state behind. The finished model is saved with its card (``attnres.card``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .card import save_trained, training_summary
from .checkpoint import save_model, snapshot_dir
from .config import BLOCK_FAMILIES, ModelConfig
from .data import BatchSampler, heldout_loss, load_corpus
from .device import autocast_for, select_device
from .model import Model
from .train_state import ResumePlan, load_resume, save_resume


@dataclass
class TrainArgs:
    """The command line of ``python -m attnres.train`` (``parse_args``), one field per flag."""

    out: str
    residual: str = "prenorm"
    attnres_block_size: int | None = None
    block: str = "gpt"  # config.BLOCK_FAMILIES: "gpt" (learned positions, GELU) | "llama" (RoPE, SwiGLU)
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None = n_head
    qk_norm: bool = False  # per-head RMSNorm on q and k (as Qwen3)
    n_layer: int = 8
    n_head: int = 4
    d_model: int = 96
    block_size: int = 256
    batch_size: int = 64
    steps: int = 5000
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 200
    schedule: str = "cosine"  # "cosine" decays from the warm-up on; "wsd" holds lr, then decays
    decay_fraction: float = 0.2  # wsd: the last fraction of the steps, cosine from lr to min_lr
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1337
    eval_every: int = 250
    eval_windows: int = 32
    snapshots: str = ""  # comma-separated steps saved (fp16) under out/snapshots/
    device: str = "auto"
    dtype: str = "bf16"  # autocast dtype on CUDA; CPU always trains in fp32
    progress: bool = True
    checkpoint_every: int = 0  # steps between resume states under out/resume/ (0: none)
    resume: bool = False  # continue from out/resume/ when it is there
    stop_after: int = 0  # end this process after this many steps (0: run to the end)


def parse_args(argv=None) -> TrainArgs:
    """CLI flags mapped one to one onto TrainArgs fields (no exec'd configurators)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainArgs(out="")
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif name in ("attnres_block_size", "n_kv_head"):
            parser.add_argument(flag, type=int, default=None)
        elif name == "block":
            parser.add_argument(flag, choices=list(BLOCK_FAMILIES), default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value, required=name == "out")
    return TrainArgs(**vars(parser.parse_args(argv)))


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr at the last step.

    With ``schedule="wsd"`` the rate stays at lr after the warm-up and the cosine decay takes only
    the last ``decay_fraction`` of the steps.
    """
    if args.schedule not in ("cosine", "wsd"):
        raise ValueError(f"schedule must be 'cosine' or 'wsd', got {args.schedule!r}")
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    start = args.warmup
    if args.schedule == "wsd":
        start = max(args.warmup, round(args.steps * (1 - args.decay_fraction)))
        if step < start:
            return args.lr
    progress = (step - start) / max(1, args.steps - start)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: Model, args: TrainArgs) -> torch.optim.AdamW:
    """Weight decay on matrices only (not on norms, biases or depth queries)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def block_grad_norms(model: Model) -> list[float]:
    """L2 norm of the gradient of each Transformer block's parameters (paper Fig. 5c)."""
    norms = []
    for block in model.blocks:
        grads = [p.grad.detach().float().norm() for p in block.parameters() if p.grad is not None]
        norms.append(torch.stack(grads).norm().item() if grads else 0.0)
    return norms


def build_model(args: TrainArgs, tokenizer) -> Model:
    """A fresh CPU model for args; the weights depend on args.seed alone (same seed, same init)."""
    if args.block not in BLOCK_FAMILIES:
        raise ValueError(f"block must be one of {', '.join(BLOCK_FAMILIES)}, got {args.block!r}")
    config = ModelConfig(
        **BLOCK_FAMILIES[args.block],
        n_kv_head=args.n_kv_head,
        qk_norm=args.qk_norm,
        vocab_size=len(tokenizer),
        block_size=args.block_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
        residual=args.residual,
        attnres_block_size=args.attnres_block_size,
    )
    torch.manual_seed(args.seed)
    return Model(config, tokenizer)


def train_step(net, model: Model, optimizer, x, y, grad_clip: float, autocast) -> tuple[float, float, list]:
    """One optimiser step on the batch (x, y), at the learning rate already set in the optimizer.

    Args:
        net: what runs the forward pass (the model, or its DistributedDataParallel wrapper).
        model: the model itself (for gradient norms and clipping).
        optimizer: from ``make_optimizer``.
        x: input ids [B, T], on the model's device.
        y: target ids [B, T], on the model's device.
        grad_clip: global gradient-norm clip.
        autocast: a context from ``device.autocast_for``.

    Returns:
        (training loss, gradient norm before clipping, per-block gradient norms).
    """
    with autocast:
        loss = net(x, targets=y).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    block_norms = block_grad_norms(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).item()
    optimizer.step()
    return loss.item(), grad_norm, block_norms


class Distributed:
    """Rank bookkeeping; a no-op unless started by torchrun."""

    def __init__(self, device: torch.device):
        self.enabled = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.device = device
        if self.enabled:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
            if device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
                torch.cuda.set_device(self.device)

    def mean(self, value: float) -> float:
        """The mean of value over ranks (every rank gets the same number)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world

    def close(self) -> None:
        """Ends the process group (when one was started)."""
        if self.enabled:
            dist.destroy_process_group()


def train(args: TrainArgs) -> dict:
    """Runs training; returns the summary written to the model card."""
    device = select_device(args.device)
    ddp = Distributed(device)
    device = ddp.device
    corpus = load_corpus()
    model = build_model(args, corpus.tokenizer).to(device)  # identical initial weights on every rank
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp.enabled else model
    optimizer = make_optimizer(model, args)
    sampler = BatchSampler(corpus.train, args.block_size, args.batch_size, args.seed, ddp.rank)
    autocast = autocast_for(device, args.dtype)
    out = Path(args.out)
    first, wall_before = load_resume(out, model, optimizer, sampler, ddp.rank) if args.resume else (0, 0.0)
    plan = ResumePlan(args.checkpoint_every, args.stop_after, first, args.steps)
    log = _Log(out, model, ddp.rank == 0, kept_steps=first)
    snapshot_steps = {int(s) for s in args.snapshots.split(",") if s.strip()}
    started = time.time() - wall_before
    bar = _progress(args, ddp.rank == 0)
    bar.update(first)
    for step in range(first, args.steps + 1):
        if plan.saves_at(step):
            save_resume(out, step, model, optimizer, sampler, ddp.rank, time.time() - started)
        if plan.stops_at(step):
            bar.close()
            ddp.close()
            return {"stopped at step": step}
        if step in snapshot_steps and ddp.rank == 0:
            save_model(
                model,
                snapshot_dir(out, step),
                dtype=torch.float16,
                extra_config={"training": {"step": step, "tokens": step * _tokens_per_step(args, ddp)}},
            )
        if step == args.steps:
            break
        row = _step(net, model, optimizer, sampler, autocast, args, step, device, ddp)
        if step % args.eval_every == 0 or step == args.steps - 1:
            row["val_loss"] = ddp.mean(heldout_loss(model, corpus.val, args.eval_windows))
        log.write(row)
        bar.update(1)
        bar.set_postfix(
            loss=f"{row['train_loss']:.3f}", tok_s=f"{row['tokens'] / (time.time() - started):.0f}"
        )
    bar.close()
    summary = _finish(args, model, corpus, device, started, ddp)
    ddp.close()
    return summary


def _tokens_per_step(args: TrainArgs, ddp: Distributed) -> int:
    return args.batch_size * args.block_size * ddp.world


def _step(net, model, optimizer, sampler, autocast, args, step, device, ddp) -> dict:
    lr = lr_at(step, args)
    for group in optimizer.param_groups:
        group["lr"] = lr
    x, y = (t.to(device, non_blocking=True) for t in sampler.next())
    loss, grad_norm, block_norms = train_step(net, model, optimizer, x, y, args.grad_clip, autocast)
    tokens = (step + 1) * _tokens_per_step(args, ddp)
    return {
        "step": step + 1,
        "tokens": tokens,
        "train_loss": ddp.mean(loss),
        "val_loss": "",
        "lr": lr,
        "grad_norm": grad_norm,
        **{f"grad_norm_block_{i}": g for i, g in enumerate(block_norms)},
    }


def _progress(args: TrainArgs, show: bool):
    from tqdm import tqdm

    return tqdm(total=args.steps, disable=not (show and args.progress), desc=Path(args.out).name, unit="step")


class _Log:
    """train_log.csv, written by rank 0 only; a resumed run keeps the rows up to its step."""

    def __init__(self, out: Path, model: Model, enabled: bool, kept_steps: int = 0):
        self.enabled, self.writer = enabled, None
        if enabled:
            out.mkdir(parents=True, exist_ok=True)
            path = out / "train_log.csv"
            kept = []
            if kept_steps and path.is_file():
                with open(path, newline="") as old:
                    kept = [row for row in csv.DictReader(old) if int(row["step"]) <= kept_steps]
            self.file = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
            fields = ["step", "tokens", "train_loss", "val_loss", "lr", "grad_norm"]
            fields += [f"grad_norm_block_{i}" for i in range(len(model.blocks))]
            self.writer = csv.DictWriter(self.file, fieldnames=fields)
            self.writer.writeheader()
            self.writer.writerows(kept)

    def write(self, row: dict) -> None:
        if self.writer:
            self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            self.file.flush()


def _finish(args, model, corpus, device, started, ddp) -> dict:
    summary = training_summary(
        model.eval(),
        corpus,
        args.eval_windows,
        steps=args.steps,
        tokens=args.steps * _tokens_per_step(args, ddp),
        batch=f"{args.batch_size} x {args.block_size} characters x {ddp.world} process(es)",
        seed=args.seed,
        device=device,
        wall_s=time.time() - started,
        command="python -m attnres.train " + shlex.join(sys.argv[1:]),
    )
    if ddp.rank == 0:
        save_trained(model.cpu(), args, summary)
    return summary


def main(argv=None) -> None:
    """The command line: trains one model and prints its summary."""
    args = parse_args(argv)
    summary = train(args)
    rank = int(os.environ.get("RANK", 0))
    print(json.dumps({"rank": rank, **{k: v for k, v in summary.items() if k != "command"}}))


if __name__ == "__main__":
    main()
