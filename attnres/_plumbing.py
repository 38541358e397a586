"""Plumbing of model.py that is not the math: recording internals, building without initialising."""

from __future__ import annotations

from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .sources import SourceRule


class Recorder:
    """Collects detached internals as a forward pass runs (the fields of ``model.Internals``)."""

    def __init__(self, rule: SourceRule, embedding: Tensor):
        self.rule = rule
        self.embedding = embedding.detach()
        self.layer_inputs, self.sublayer_outputs, self.depth_weights, self.depth_sources = [], [], [], []

    def site(self, l: int, h: Tensor, weights: Tensor | None) -> None:
        """h_l, its depth weights (None for PreNorm) and its source labels."""
        self.layer_inputs.append(h.detach())
        self.depth_sources.append(self.rule.labels(l))
        if weights is not None:
            self.depth_weights.append(weights.detach())

    def output(self, v: Tensor) -> None:
        """v_l."""
        self.sublayer_outputs.append(v.detach())


class SkipInit(TorchFunctionMode):
    """Makes torch.nn.init and the in-place fills return their tensor untouched.

    On the meta device they would otherwise run PyTorch's Python reference ops, whose first call
    imports torch._dynamo (seconds, once per process).
    """

    SKIPPED = frozenset(
        [getattr(nn.init, name) for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]
        + [Tensor.normal_, Tensor.uniform_, Tensor.fill_, Tensor.zero_]
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        """Skips the initialisers; runs everything else."""
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)
