"""Every probe by name: the one registry the app, the CLI report and the benchmarks look probes up in.

Each entry is called as ``PROBES[name](model, inputs, **params)``. The names are the functions' own
(stable, hashable cache keys). The probes in ``TRACED`` read one no-grad forward pass
(``probes.trace``) and also take that Trace as ``inputs``: several of them on one prompt then share
a single run of the model, with the same numbers as each run alone.
"""

from __future__ import annotations

from collections.abc import Callable

from .ablation import ablate
from .attribution import gate_attribution, route_ablation
from .depth import depth_weights
from .gradients import gradient_norms
from .lens import logit_lens
from .loss import prompt_loss
from .norms import stream_norms
from .retrieval import depth_retrieval

PROBES: dict[str, Callable] = {
    "prompt_loss": prompt_loss,
    "depth_weights": depth_weights,
    "stream_norms": stream_norms,
    "depth_retrieval": depth_retrieval,
    "gradient_norms": gradient_norms,  # a forward and backward pass of its own
    "gate_attribution": gate_attribution,
    "route_ablation": route_ablation,
    "ablate": ablate,  # runs the model with one site's routing changed
    "logit_lens": logit_lens,
}
TRACED = frozenset(
    {"prompt_loss", "depth_weights", "stream_norms", "depth_retrieval", "gate_attribution", "route_ablation",
     "logit_lens"}
)  # fmt: skip
