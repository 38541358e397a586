"""AttnRes Lens figure builders: probe results in, plotly figures and table rows out.

Used by both the Streamlit app and the CLI report (``python -m report``); plotly only, no
streamlit. Every figure has a title in ``fig.layout.title.text``; every label that comes from a prompt
or a model is HTML-escaped with ``style.safe_label``.
"""

from .attribution import ablation_chart, ablation_table, attribution_heatmap, attribution_vs_weight
from .depth import depth_heatmap, depth_heatmaps, depth_zmax, entropy_chart, sinks_table, token_source_heatmap
from .dynamics import loss_curves, read_train_log, snapshot_depth_heatmaps, snapshot_norms_chart
from .export import to_csv, to_html, to_json, to_png
from .lens import logit_lens_heatmap, logit_lens_table
from .norms import (
    block_output_chart,
    gradient_chart,
    norm_growth_chart,
    update_ratio_chart,
    update_share_chart,
)
from .retrieval import mixing_matrix, retrieval_graph, retrieval_summary
from .style import safe_label
from .teaching import dilution_chart, simulate_dilution

__all__ = [
    "ablation_chart",
    "ablation_table",
    "attribution_heatmap",
    "attribution_vs_weight",
    "block_output_chart",
    "depth_heatmap",
    "depth_heatmaps",
    "depth_zmax",
    "dilution_chart",
    "entropy_chart",
    "gradient_chart",
    "logit_lens_heatmap",
    "logit_lens_table",
    "loss_curves",
    "mixing_matrix",
    "norm_growth_chart",
    "read_train_log",
    "retrieval_graph",
    "retrieval_summary",
    "safe_label",
    "simulate_dilution",
    "sinks_table",
    "snapshot_depth_heatmaps",
    "snapshot_norms_chart",
    "to_csv",
    "to_html",
    "to_json",
    "to_png",
    "token_source_heatmap",
    "update_ratio_chart",
    "update_share_chart",
]
