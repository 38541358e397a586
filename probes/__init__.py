"""AttnRes Lens probes: pure measurements of what Attention Residuals do inside a model.

Torch in, frozen numpy dataclasses out (every field documents its shape; ``to_dict()`` is JSON-ready).
Every probe takes ``(model, inputs, ...)`` where ``inputs`` is text, a Prompt, a list of them, a
Batch or token ids, works on all three residual rules (prenorm, full, block) through the Internals
contract, and runs on whatever device the model is on. See probes/API.md for the table.

Sites are l = 1..L+1 (L = 2 * n_layer sublayers; L+1 is the output readout); arrays over sources
are padded to the largest source count with NaN and come with the model's own label tuples.
"""

from ._common import ProbeResult, Trace, trace
from .ablation import MODES, AblationResult, ablate
from .attribution import (
    GateAttribution,
    RouteAblation,
    attribution_estimates,
    gate_attribution,
    route_ablation,
)
from .compare import Comparison, compare
from .depth import DepthSinks, DepthWeights, depth_sinks, depth_weights
from .dilution import DilutionMetrics, dilution_metrics, stream_dilution
from .dynamics import SnapshotSeries, over_snapshots
from .gradients import GradientNorms, gradient_norms
from .lens import LogitLens, logit_lens
from .loss import prompt_loss
from .norms import StreamNorms, stream_norms
from .parameters import depth_parameter_summary
from .prompt import Batch, Prompt, PromptError, encode_prompt, make_batch, token_strings
from .registry import PROBES, TRACED
from .retrieval import Retrieval, depth_retrieval

__all__ = [
    "MODES",
    "PROBES",
    "TRACED",
    "AblationResult",
    "Batch",
    "Comparison",
    "DepthSinks",
    "DepthWeights",
    "DilutionMetrics",
    "GateAttribution",
    "RouteAblation",
    "GradientNorms",
    "LogitLens",
    "ProbeResult",
    "Prompt",
    "PromptError",
    "Retrieval",
    "SnapshotSeries",
    "StreamNorms",
    "Trace",
    "ablate",
    "attribution_estimates",
    "compare",
    "depth_parameter_summary",
    "depth_retrieval",
    "depth_sinks",
    "depth_weights",
    "dilution_metrics",
    "encode_prompt",
    "gate_attribution",
    "gradient_norms",
    "logit_lens",
    "make_batch",
    "over_snapshots",
    "prompt_loss",
    "route_ablation",
    "stream_dilution",
    "stream_norms",
    "token_strings",
    "trace",
]
