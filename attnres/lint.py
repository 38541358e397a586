"""Health lint of a loaded model: is this AttnRes checkpoint what it claims to be?

``lint_model(model)`` returns findings (severity, code, message), most serious first. Static checks
read the weights and ``model.import_report``; probe checks run one short prompt and read the depth
weights and sources. Codes:

  nonfinite            error    NaN/Inf weights (only loadable with allow_nonfinite=True)
  zero-queries         error    every depth query is zero although the checkpoint claims training
  missing-readout      error    the output readout (site L+1) was absent or never trained
  block-size-unit      warning  a block model whose source did not state what S counts
  alpha-sum            error    depth weights that do not sum to 1 on the probe prompt
  embedding-twice      error    a source that is the embedding again (cumulative states + embedding)
  value-spike          warning  a site whose weight sits on a source far larger than the others
  convention           info     a convention of the checkpoint's own project (a fixed readout, the
                                embedding counted in b_0 and block 1, S counted in Transformer
                                layers, ...): what it is, not a problem; the checks it would trip
                                (missing-readout, embedding-twice, alpha-sum at a "sum" readout) skip it
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import Model
from .sources import SourceRule, running_block_sums, source_tensors

SEVERITIES = ("error", "warning", "info")
CONCENTRATED = 0.9  # alpha above this on one source: the site effectively copies it
SPIKE_RATIO = 10.0  # that source's RMS over the median RMS of the site's sources
SUM_TOL = 1e-4


@dataclass(frozen=True)
class Finding:
    """One problem found: severity ("error" | "warning" | "info"), a stable code, one sentence."""

    severity: str
    code: str
    message: str

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


def lint_model(model: Model, prompt_ids: list[int] | torch.Tensor | None = None) -> list[Finding]:
    """Checks a model for the ways an imported or trained AttnRes checkpoint goes wrong.

    Args:
        model: a loaded Model (``model.import_report`` is used when present).
        prompt_ids: token ids of the probe prompt; default: the first 16 ids.

    Returns:
        Findings, errors first; an empty list means nothing was found.
    """
    findings = _nonfinite(model)
    if model.config.residual != "prenorm":
        findings += _conventions(model) + _zero_queries(model) + _readout(model) + _block_size_unit(model)
        if not any(f.code == "nonfinite" for f in findings):  # NaN would make the probe meaningless
            findings += _probe(model, prompt_ids)
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def _nonfinite(model: Model) -> list[Finding]:
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if not bad:
        return []
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return [Finding("error", "nonfinite", f"{len(bad)} weight tensor(s) hold NaN or Inf: {shown}.")]


def _queries(model: Model) -> list[torch.Tensor]:
    """The learned queries: sites 1..L, and L+1 unless the readout is a peer's fixed mix."""
    last = model.config.n_sublayers + (2 if model.config.readout == "attnres" else 1)
    return [model.site(l).query for l in range(1, last)]


def _conventions(model: Model) -> list[Finding]:
    """The checkpoint's own conventions (docs/formats.md), reported as facts about it."""
    report, cfg = model.import_report, model.config
    if report is not None and report.format != "attnres-lens" and report.conventions:
        return [
            Finding("info", "convention", f"{report.format} convention, {name}: {value}.")
            for name, value in report.conventions
        ]
    found = []
    if cfg.readout != "attnres":
        what = {"none": "the last block's sum", "sum": "v_1 + .. + v_L"}[cfg.readout]
        found.append(
            Finding("info", "convention", f"no learned readout: h_(L+1) is {what} (readout={cfg.readout!r}).")
        )
    if cfg.first_block_has_embedding:
        found.append(Finding("info", "convention", "the embedding is counted in b_0 and again in block 1."))
    if cfg.depth_recency_bias:
        found.append(
            Finding("info", "convention", "each site adds a learned bias to its newest source's logit.")
        )
    return found


def _claims_training(model: Model) -> str | None:
    """Why we believe the checkpoint was trained (None when nothing says so)."""
    report = model.import_report
    if report is not None and report.trained_steps:
        return f"its checkpoint records {report.trained_steps} training steps"
    gains = [p for name, p in model.named_parameters() if name.endswith("norm.weight")]
    if any(not torch.all(g == 1) for g in gains):
        return "its norm gains have moved from their initial value of 1"
    return None


def _zero_queries(model: Model) -> list[Finding]:
    if any(q.abs().max() > 0 for q in _queries(model)):
        return []
    why = _claims_training(model)
    if why is None:
        message = "every depth query is zero: an untrained model averages its sources uniformly."
        return [Finding("info", "zero-queries", message)]
    return [
        Finding(
            "error",
            "zero-queries",
            f"every depth query is zero although {why}: the queries were probably not saved or not mapped.",
        )
    ]


def _readout(model: Model) -> list[Finding]:
    report = model.import_report
    if model.config.readout != "attnres":  # a peer's fixed readout: a convention, not a lost site
        return []
    if report is not None and any(m.startswith("out_res") for m in report.missing):
        return [Finding("error", "missing-readout", "the checkpoint has no output readout (site L+1).")]
    queries = _queries(model)
    if queries[-1].abs().max() == 0 and any(q.abs().max() > 0 for q in queries[:-1]):
        return [
            Finding(
                "error",
                "missing-readout",
                "the output readout query (site L+1) is zero while other sites are trained: "
                "the source's final aggregation was probably missing.",
            )
        ]
    return []


def _block_size_unit(model: Model) -> list[Finding]:
    cfg, report = model.config, model.import_report
    if cfg.residual != "block" or report is None or report.format == "attnres-lens":
        return []
    if any(name == "block-size unit" for name, _ in report.conventions):
        return []
    return [
        Finding(
            "warning",
            "block-size-unit",
            f"S={cfg.attnres_block_size} came from a {report.format} checkpoint that does not say whether it "
            "counts sublayers or Transformer layers; the block sources may be wrong.",
        )
    ]


@torch.no_grad()
def _probe(model: Model, prompt_ids) -> list[Finding]:
    cfg = model.config
    if prompt_ids is None:
        prompt_ids = [i % cfg.vocab_size for i in range(min(16, cfg.block_size))]
    device = next(model.parameters()).device
    tokens = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)
    it = model(tokens, return_internals=True, depth_impl="sequential").internals
    findings, rule = [], SourceRule.of(cfg)
    running = running_block_sums(rule, it.sublayer_outputs, it.embedding)
    for l, (weights, labels) in enumerate(zip(it.depth_weights, it.depth_sources, strict=True), start=1):
        sources = source_tensors(rule, l, it.embedding, it.sublayer_outputs, running)
        if l == rule.readout and rule.readout_coefficients() is not None:
            continue  # a fixed readout (convention) is no softmax: neither its sum nor its peaks say anything
        findings += _alpha_sum(l, weights) + _embedding_twice(l, labels, sources, rule)
        findings += _spike(l, weights, sources)
    return findings


def _alpha_sum(l: int, weights: torch.Tensor) -> list[Finding]:
    error = (weights.float().sum(-1) - 1).abs().max().item()
    if error <= SUM_TOL:
        return []
    message = f"site {l}: depth weights sum to 1 +- {error:.2g} on the probe prompt."
    return [Finding("error", "alpha-sum", message)]


def _embedding_twice(l: int, labels: tuple[str, ...], sources: list[torch.Tensor], rule) -> list[Finding]:
    emb = sources[0]
    scale = emb.norm().clamp_min(1e-12)
    for label, source in zip(labels[1:], sources[1:], strict=True):
        if 0 in rule.members(label, l):
            continue  # the model's own rule puts v_0 in this source (first_block_has_embedding)
        if (source - emb).norm() / scale < 1e-3:
            return [
                Finding(
                    "error",
                    "embedding-twice",
                    f"site {l}: source {label} equals the embedding, so the embedding is counted twice "
                    "(a peer whose sources are cumulative states plus the embedding?).",
                )
            ]
    return []


def _spike(l: int, weights: torch.Tensor, sources: list[torch.Tensor]) -> list[Finding]:
    rms = torch.stack([s.float().pow(2).mean(-1).sqrt() for s in sources], dim=-1)  # [B, T, K]
    top_weight, top = weights.float().max(-1)  # [B, T]
    ratio = rms.gather(-1, top[..., None])[..., 0] / rms.median(-1).values.clamp_min(1e-12)
    spikes = (top_weight > CONCENTRATED) & (ratio > SPIKE_RATIO)
    if not spikes.any() or len(sources) < 3:
        return []
    return [
        Finding(
            "warning",
            "value-spike",
            f"site {l}: at {int(spikes.sum())} token(s) the weight concentrates (> {CONCENTRATED}) "
            f"on a source up to {ratio[spikes].max().item():.0f}x the median source magnitude.",
        )
    ]
