"""The depth-attention parameters of a model at a glance: query norms, key gains, query cosines."""

from __future__ import annotations

import torch


def _site_name(site: int, n_sublayers: int) -> str:
    kind = "readout" if site == n_sublayers + 1 else "attn" if site % 2 else "mlp"
    return f"l={site} {kind}"


@torch.no_grad()
def depth_parameter_summary(model) -> tuple[list[dict], list[dict]]:
    """Per site: its pseudo-query's norm, its key-norm gain, and how its query points against the others.

    Args:
        model: an ``attnres.Model``.

    Returns:
        (rows, cosine rows). A row is ``{"site", "query norm", "key gain mean"}``; a cosine row is
        ``{"site", <every site's name>: cosine of the two queries, rounded to 3 places}``, NaN where
        either query is zero (the zero-initialised queries of an untrained model). Both lists are empty
        for PreNorm, which has no depth parameters.
    """
    if model.config.residual == "prenorm":
        return [], []
    L = model.config.n_sublayers
    sites = range(1, L + 2)
    names = [_site_name(l, L) for l in sites]
    queries = torch.stack([model.site(l).query.float().cpu() for l in sites])  # [L+1, d]
    norms = queries.norm(dim=-1)  # [L+1]
    rows = [
        {
            "site": name,
            "query norm": float(n),
            "key gain mean": float(model.site(l).norm.weight.float().mean()),
        }
        for name, n, l in zip(names, norms, sites, strict=True)
    ]
    unit = queries / norms.clamp_min(1e-12)[:, None]
    zero = norms == 0
    cosine = (unit @ unit.T).masked_fill(zero[:, None] | zero[None, :], float("nan"))  # [L+1, L+1]
    cos_rows = [
        {"site": name, **{other: round(float(c), 3) for other, c in zip(names, row, strict=True)}}
        for name, row in zip(names, cosine, strict=True)
    ]
    return rows, cos_rows
