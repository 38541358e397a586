"""The full probe set on one or more models for one prompt, timed per probe.

Used by the CLI report (``python -m report``) and the probe-sweep benchmarks: one place that says
what "every probe" means, as names of ``probes.registry.PROBES`` (the app looks probes up there
too). No plotting here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ._common import trace
from .attribution import DEFAULT_IG_STEPS
from .depth import depth_sinks
from .prompt import encode_prompt
from .registry import PROBES, TRACED

# Every probe the report shows, in its order (names of PROBES).
SWEEP = ("depth_weights", "stream_norms", "depth_retrieval", "gradient_norms", "gate_attribution",
         "route_ablation", "ablate", "logit_lens")  # fmt: skip
# What the app's Compare page shows: depth heatmaps, norm growth, the retrieval table.
COMPARE_VIEW = ("depth_weights", "stream_norms", "depth_retrieval")
# Ablations run at the output readout (site L+1), one per mode; zero_source removes the embedding.
ABLATIONS = (("uniform", None), ("argmax", None), ("plain_sum", None), ("zero_source", "emb"))


@dataclass
class Sweep:
    """Results and wall times of every probe on every model (names in the order given)."""

    prompts: dict[str, object] = field(default_factory=dict)  # name -> Prompt (tokens, notices)
    results: dict[str, dict[str, object]] = field(default_factory=dict)  # name -> probe -> result
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> probe -> wall time (s)

    def total_seconds(self, name: str) -> float:
        """Wall time of every probe on one model."""
        return sum(self.seconds[name].values())


def _parameters(probe: str, model, attribution_steps: int) -> list[dict]:
    """The parameters of each call of ``probe`` in the sweep (``ablate`` runs once per ABLATIONS)."""
    readout = model.config.n_sublayers + 1
    if probe == "gate_attribution":
        return [{"n_steps": attribution_steps}]
    if probe == "route_ablation":  # each route of the output readout alone at its prompt mean
        return [{"site": readout}]
    if probe == "ablate":
        return [{"site": readout, "mode": mode, "source": source} for mode, source in ABLATIONS]
    return [{}]


def _run_probe(probe: str, model, text: str, attribution_steps: int, shared: dict):
    """One probe's result (a tuple for ``ablate``).

    The probes that read a no-grad trace share one, made by the first of them (its time counts there).
    """
    if probe in TRACED:
        if "trace" not in shared:
            shared["trace"] = trace(model, text)
        text = shared["trace"]
    results = tuple(
        PROBES[probe](model, text, **params) for params in _parameters(probe, model, attribution_steps)
    )
    return results if probe == "ablate" else results[0]


def full_sweep(
    models: Mapping[str, object] | Sequence,
    text: str,
    probes: Sequence[str] = SWEEP,
    attribution_steps: int = DEFAULT_IG_STEPS,
    on_step: Callable[[str, str], None] | None = None,
) -> Sweep:
    """Runs every probe on every model for one prompt and times each.

    Args:
        models: name -> ``attnres.Model``, or a sequence of models (named "model0", "model1", ...).
        text: the prompt (at least two tokens; gradients need a next token).
        probes: which probes, a subset of ``SWEEP`` (depth weights, stream norms, retrieval,
            gradients, IG attribution of the last token, single-route mean ablations at the readout,
            the readout ablations, logit lens).
        attribution_steps: integrated-gradients steps.
        on_step: called as ``on_step(name, probe)`` after each probe (e.g. to advance a progress bar).

    Returns:
        Sweep with ``results[name][probe]``: ``ablate`` -> a tuple of AblationResult (one per entry of
        ``ABLATIONS``), every other probe its result; with depth_weights also ``depth_sinks`` (its
        DepthSinks, timed with it).
    """
    if not isinstance(models, Mapping):
        models = {f"model{i}": model for i, model in enumerate(models)}
    unknown = [p for p in probes if p not in SWEEP]
    if unknown:
        raise ValueError(f"unknown probes {unknown}; probes are {', '.join(SWEEP)}")
    sweep = Sweep()
    for name, model in models.items():
        sweep.prompts[name] = encode_prompt(model, text)
        results, sweep.seconds[name], shared = {}, {}, {}
        for probe in probes:
            start = time.perf_counter()
            results[probe] = _run_probe(probe, model, text, attribution_steps, shared)
            if probe == "depth_weights":
                results["depth_sinks"] = depth_sinks(results[probe])
            sweep.seconds[name][probe] = time.perf_counter() - start
            if on_step is not None:
                on_step(name, probe)
        sweep.results[name] = results
    return sweep
