"""The corpus sweep: a model over N sequences in batches, every statistic streamed and mergeable.

One no-grad forward per batch with the model's internals (the default depth path), measured on the
device (``measure.BatchMeasure``) and folded into accumulators that never grow with N
(``state.SweepState``). With ``gradients=True`` each batch also runs one backward. Under
``torch.distributed`` (e.g. ``torchrun``) each rank sweeps every W-th sequence and the accumulators
are gathered and merged on every rank, so all ranks return the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .cache import SweepCache, model_fingerprint, sweep_key
from .measure import BatchMeasure
from .result import CorpusStats, build_stats
from .state import SweepState
from .texts import Sequences, load_sequences

DEFAULT_MAX_SEQS = 128
DEFAULT_SEQ_LEN = 256


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep measures and on how much text."""

    max_seqs: int = DEFAULT_MAX_SEQS  # at most this many sequences (evenly spaced over the source)
    seq_len: int | None = DEFAULT_SEQ_LEN  # tokens per sequence, capped at the model's context
    batch_size: int = 8  # sequences per forward
    lens: bool = True  # logit-lens KL at every site (one readout per site)
    gradients: bool = False  # one backward per batch: Fig. 5c and ||d loss / d h_l||
    bins: int = 100  # histogram bins on [0, 1] per (site, source) cell, for the quantiles
    text_field: str = "text"  # the text field of a .jsonl line or a dataset row

    def key_fields(self) -> dict:
        """The settings a result depends on (batch size only with gradients: the batch's loss)."""
        fields = {"lens": self.lens, "gradients": self.gradients, "bins": self.bins}
        return fields | ({"batch_size": self.batch_size} if self.gradients else {})


class SweepCancelled(Exception):
    """The sweep was stopped by its cancel signal; ``partial`` holds what was measured so far."""

    def __init__(self, partial: CorpusStats | None):
        super().__init__("the corpus sweep was cancelled; run it again to resume")
        self.partial = partial


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(state: SweepState, world: int) -> SweepState:
    """Every rank's accumulators, merged in rank order (the same on every rank)."""
    arrays = state.state()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    per_rank: list[dict] = [{} for _ in range(world)]
    for key in sorted(arrays):
        value = torch.as_tensor(arrays[key]).to(device)
        value = value.double() if value.is_floating_point() else value.long()
        gathered = [torch.empty_like(value) for _ in range(world)]
        dist.all_gather(gathered, value)
        for rank, g in enumerate(gathered):
            per_rank[rank][key] = g.cpu().numpy()
    merged = None
    for arrays_r in per_rank:
        part = SweepState(state.layout, state.present, state.seq_len, state.hist.bins, state.present.device)
        part.load(arrays_r)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    return merged


class _Run:
    """One sweep of one model: sequences, accumulators, cache key and bookkeeping."""

    def __init__(self, model, seqs: Sequences, settings: SweepSettings, cache: SweepCache | None):
        self.model, self.seqs, self.settings, self.cache = model, seqs, settings, cache
        self.device = next(model.parameters()).device
        self.measure = BatchMeasure(model, lens=settings.lens, gradients=settings.gradients)
        self.fingerprint = model_fingerprint(model)
        self.key = sweep_key(self.fingerprint, seqs.digest, settings.key_fields())
        self.rank, self.world = _rank_world()
        self.meta = {
            "residual": model.config.residual,
            "corpus": seqs.name,
            "corpus_digest": seqs.digest,
            "model_fingerprint": self.fingerprint,
            "labels": [list(s) for s in self.measure.labels],
            "settings": asdict(settings),
            "seq_len": int(seqs.tokens.shape[1]),
        }

    def new_state(self) -> SweepState:
        seq_len = int(self.seqs.tokens.shape[1])
        return SweepState(self.measure.layout, self.measure.present, seq_len, self.settings.bins, self.device)

    def cached(self) -> CorpusStats | None:
        found = self.cache.load(self.key) if self.cache is not None else None
        if found is None:
            return None
        state = self.new_state()
        try:
            state.load(found[0])
        except (KeyError, ValueError):
            return None
        return build_stats(state, self.measure.labels, self.meta)

    def resume(self) -> SweepState:
        state = self.new_state()
        saved = self.cache.load_partial(self.key, self.rank, self.world) if self.cache is not None else None
        if saved is not None:
            try:
                state.load(saved)
            except (KeyError, ValueError):
                state = self.new_state()
        return state

    def save_partial(self, state: SweepState) -> None:
        if self.cache is not None and state.done:
            self.cache.save_partial(self.key, state.state(), self.rank, self.world)

    def result(self, state: SweepState, complete: bool) -> CorpusStats:
        return build_stats(state, self.measure.labels, {**self.meta, "complete": complete})


def _sweep_shard(run: _Run, state: SweepState, progress, cancel, checkpoint_s: float) -> None:
    """Folds this rank's remaining sequences into state, batch by batch."""
    mine = torch.arange(run.rank, len(run.seqs), run.world)
    batch, last_save = run.settings.batch_size, time.monotonic()
    for start in range(state.done, len(mine), batch):
        if _cancelled(cancel):
            run.save_partial(state)
            raise SweepCancelled(run.result(state, complete=False))
        rows = mine[start : start + batch]
        lengths = run.seqs.lengths[rows]
        tokens = run.seqs.tokens[rows, : int(lengths.max())].to(run.device)
        mask = (torch.arange(tokens.shape[1])[None] < lengths[:, None]).to(run.device)
        state.add(run.measure(tokens, mask), mask)
        if progress is not None:
            progress(min(len(run.seqs), state.done * run.world), len(run.seqs))
        if time.monotonic() - last_save > checkpoint_s:
            run.save_partial(state)
            last_save = time.monotonic()


def corpus_sweep(
    model,
    corpus: Sequences | str | Path | None = None,
    settings: SweepSettings | None = None,
    cache: SweepCache | str | Path | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    checkpoint_s: float = 5.0,
) -> CorpusStats:
    """Runs a model over a corpus and returns corpus-level statistics with 95% CIs over sequences.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        corpus: ``Sequences``, or a source for ``load_sequences`` (None: the held-out plays).
        settings: what to measure (``SweepSettings()`` by default).
        cache: a ``SweepCache`` or directory; True for the default directory; None/False for none.
            A finished sweep with the same key is returned without running the model; an unfinished
            one is resumed.
        progress: called as ``progress(sequences_done, sequences_total)`` after every batch.
        cancel: a ``threading.Event`` or a callable returning True to stop after the current batch.
        checkpoint_s: with a cache, save the accumulators at least this often (seconds).

    Raises:
        SweepCancelled: cancel was set (its ``partial`` is the statistics so far, saved to the cache).
        CorpusError: the corpus cannot be read.
    """
    settings = settings or SweepSettings()
    if cache is True:
        cache = SweepCache()
    elif cache is not None and cache is not False and not isinstance(cache, SweepCache):
        cache = SweepCache(cache)
    cache = cache or None
    if not isinstance(corpus, Sequences):
        seq_len = min(settings.seq_len or model.config.block_size, model.config.block_size)
        corpus = load_sequences(model, corpus, seq_len, settings.max_seqs, settings.text_field)
    run = _Run(model, corpus, settings, cache)
    found = run.cached()
    if found is not None:
        return found
    was_training = model.training
    model.eval()
    state = run.resume()
    try:
        _sweep_shard(run, state, progress, cancel, checkpoint_s)
    except SweepCancelled:
        raise
    except BaseException:
        run.save_partial(state)  # an interrupted run (error, Ctrl-C, a page rerun) resumes from here
        raise
    finally:
        model.train(was_training)
    if run.world > 1:
        state = _gather(state, run.world)
    result = run.result(state, complete=True)
    if cache is not None and run.rank == 0:
        cache.save(run.key, state.state(), {**run.meta, "n_sequences": result.n_sequences})
    if cache is not None:
        cache.remove_partial(run.key, run.rank, run.world)
    return result


def is_cached(model, corpus: Sequences, settings: SweepSettings, cache: SweepCache) -> bool:
    """True when a finished sweep of this model, corpus and settings is in the cache."""
    key = sweep_key(model_fingerprint(model), corpus.digest, settings.key_fields())
    return (cache.directory / f"{key}.json").exists()
