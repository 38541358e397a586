"""Corpus-level evidence: every routing and magnitude statistic over N sequences, with spread and CIs.

    stats = corpus_sweep(model)                      # the held-out plays, 128 sequences of 256 tokens
    stats = corpus_sweep(model, "notes.jsonl", SweepSettings(max_seqs=512), cache=True)
    corpus_sinks(stats)                              # sources that draw weight whatever the input
    prompt_vs_corpus(depth_weights(model, text), stats)  # where one prompt's routing is unusual
    corpus_diff(stats_a, stats_b)                    # two models of the same depth

``python -m probes.corpus MODEL --corpus PATH --max-seqs N`` runs it from the shell (tqdm), also
data-parallel under ``torchrun``. See probes/API.md.
"""

from .accumulators import CoMoments, Histogram, Moments
from .cache import SweepCache, default_cache_dir, model_fingerprint
from .compare import CorpusDiff, CorpusSinks, PromptVsCorpus, corpus_diff, corpus_sinks, prompt_vs_corpus
from .result import CorpusStats, Estimate
from .sweep import SweepCancelled, SweepSettings, corpus_sweep, is_cached
from .texts import CorpusError, Sequences, documents, load_sequences

__all__ = [
    "CoMoments",
    "CorpusDiff",
    "CorpusError",
    "CorpusSinks",
    "CorpusStats",
    "Estimate",
    "Histogram",
    "Moments",
    "PromptVsCorpus",
    "Sequences",
    "SweepCache",
    "SweepCancelled",
    "SweepSettings",
    "corpus_diff",
    "corpus_sinks",
    "corpus_sweep",
    "default_cache_dir",
    "documents",
    "is_cached",
    "load_sequences",
    "model_fingerprint",
    "prompt_vs_corpus",
]
