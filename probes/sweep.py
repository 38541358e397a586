"""The full probe set on one or more models for one prompt, timed per probe.

Used by the CLI report (``python -m report``), the probe-sweep benchmark and the app: one place
that says what "every probe" means. No plotting here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ._common import trace
from .ablation import ablate
from .attribution import DEFAULT_IG_STEPS, gate_attribution, route_ablation
from .depth import depth_sinks, depth_weights
from .gradients import gradient_norms
from .lens import logit_lens
from .norms import stream_norms
from .prompt import encode_prompt
from .retrieval import depth_retrieval

TRACED = ("depth", "norms", "retrieval", "attribution", "routes", "lens")  # read probes._common.trace
# What the app's Compare page shows: depth heatmaps, norm growth, the retrieval table.
COMPARE_VIEW = ("depth", "norms", "retrieval")
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


def _readout(model) -> int:
    return model.config.n_sublayers + 1


def _depth(model, inputs, steps: int):
    weights = depth_weights(model, inputs)
    return weights, depth_sinks(weights)


def _ablations(model, inputs, steps: int):
    return tuple(ablate(model, inputs, _readout(model), mode, source=source) for mode, source in ABLATIONS)


# probe name -> f(model, inputs, attribution_steps): a probe result or a tuple of them.
RUNNERS: dict[str, Callable] = {
    "depth": _depth,  # (DepthWeights, DepthSinks)
    "norms": lambda model, inputs, steps: stream_norms(model, inputs),
    "retrieval": lambda model, inputs, steps: depth_retrieval(model, inputs),
    "gradients": lambda model, inputs, steps: gradient_norms(model, inputs),
    "attribution": lambda model, inputs, steps: gate_attribution(model, inputs, n_steps=steps),
    # each route of the output readout alone at its prompt mean
    "routes": lambda model, inputs, steps: route_ablation(model, inputs, _readout(model)),
    "ablation": _ablations,  # one AblationResult per entry of ABLATIONS
    "lens": lambda model, inputs, steps: logit_lens(model, inputs),
}
PROBES = tuple(RUNNERS)


def _run_probe(probe: str, model, text: str, attribution_steps: int, shared: dict):
    """One probe's result.

    The probes that read a no-grad trace share one, made by the first of them (its time counts there).
    """
    if probe in TRACED:
        if "trace" not in shared:
            shared["trace"] = trace(model, text)
        text = shared["trace"]
    return RUNNERS[probe](model, text, attribution_steps)


def full_sweep(
    models: Mapping[str, object] | Sequence,
    text: str,
    probes: Sequence[str] = PROBES,
    attribution_steps: int = DEFAULT_IG_STEPS,
    on_step: Callable[[str, str], None] | None = None,
) -> Sweep:
    """Runs every probe on every model for one prompt and times each.

    Args:
        models: name -> ``attnres.Model``, or a sequence of models (named "model0", "model1", ...).
        text: the prompt (at least two tokens; gradients need a next token).
        probes: which probes, a subset of ``PROBES`` (depth weights + sinks, stream norms, retrieval,
            gradients, IG attribution of the last token, single-route mean ablations at the readout,
            the readout ablations, logit lens).
        attribution_steps: integrated-gradients steps.
        on_step: called as ``on_step(name, probe)`` after each probe (e.g. to advance a progress bar).

    Returns:
        Sweep with ``results[name][probe]``: depth -> (DepthWeights, DepthSinks), ablation -> a tuple
        of AblationResult (one per entry of ``ABLATIONS``), every other probe its result.
    """
    if not isinstance(models, Mapping):
        models = {f"model{i}": model for i, model in enumerate(models)}
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probes {unknown}; probes are {', '.join(PROBES)}")
    sweep = Sweep()
    for name, model in models.items():
        sweep.prompts[name] = encode_prompt(model, text)
        sweep.results[name], sweep.seconds[name], shared = {}, {}, {}
        for probe in probes:
            start = time.perf_counter()
            sweep.results[name][probe] = _run_probe(probe, model, text, attribution_steps, shared)
            sweep.seconds[name][probe] = time.perf_counter() - start
            if on_step is not None:
                on_step(name, probe)
    return sweep
