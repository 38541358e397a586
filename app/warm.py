"""Once per server process: every library the pages need, imported before any session runs, and
the default Compare view computed in the background.

Streamlit runs each session's script in its own thread. A library that one run imports lazily sits
half-built in ``sys.modules`` while its import runs, and some libraries look there instead of
importing: plotly asks ``sys.modules`` for pandas, numpy and PIL.Image whenever it validates or
serialises a figure, Streamlit for matplotlib.pyplot after every run. So a first import of pandas in
one session (a table) made another session's figure fail with "partially initialized module
'pandas' has no attribute 'Series'". ``streamlit_app.py`` imports this module before anything else:
the first run of every session waits on the import lock until the imports below have finished once,
and nothing is imported lazily afterwards. ``python -m app.serve`` imports it and calls ``start``
as the server starts, so the first visitor finds the imports done and the default view cached.
"""

from __future__ import annotations

import logging
import threading

# Libraries imported lazily by a page, a probe or a download, or looked up in sys.modules by
# plotly and Streamlit; imported here, completely, before any session runs.
import captum.attr  # noqa: F401  (attribution; imports IPython, matplotlib and PIL: the slowest)
import kaleido  # noqa: F401  (PNG downloads)
import matplotlib.pyplot  # noqa: F401  (Streamlit closes its figures after each run)
import narwhals  # noqa: F401  (plotly's dataframe checks)
import numpy as np
import pandas  # noqa: F401  (plotly's array checks; st.dataframe)
import PIL.Image  # noqa: F401  (plotly's JSON encoder)
import plotly.graph_objects as go
import plotly.io
import plotly.offline  # noqa: F401  (HTML downloads inline plotly.js)
import pyarrow  # noqa: F401  (st.dataframe)
import tokenizers  # noqa: F401  (imported models' tokenizers)
import torch  # noqa: F401
from huggingface_hub import scan_cache_dir  # noqa: F401  (the inspector lists the hub cache; lazy package)

import attnres.hf_tokenizer  # noqa: F401
import attnres.importers  # noqa: F401
import figures
from app import common, models
from attnres.device import select_device
from figures import style

LOG = logging.getLogger(__name__)
COMPARE_PROBES = ("depth_weights", "stream_norms", "depth_retrieval")  # what the home page asks for


def _exercise_plotly() -> None:
    """Builds and serialises one figure of every trace type the app draws, with the shared layout:
    plotly imports its trace classes and validators, and loads its template, on first use."""
    fig = go.Figure(
        [
            go.Heatmap(z=np.eye(2), colorscale=style.WEIGHT_COLORSCALE),
            go.Scatter(x=[1, 2], y=[1.0, 2.0], name="a"),
            go.Bar(x=["a", "b"], y=[1.0, -1.0], name="b"),
        ]
    )
    style.log_axis(style.layout(fig, "warm-up", "x", "y", subtitle="sub"), [1.0, 2.0])
    plotly.io.to_json(fig, validate=False)
    pandas.DataFrame([{"a": 1, "b": "x"}]).pipe(pyarrow.Table.from_pandas)


_exercise_plotly()


def warm_default_view() -> None:
    """Loads the default models and computes the home page's numbers and figures for the default
    prompt, through the same caches the pages use (a session asking meanwhile waits for them)."""
    entries = list(models.shipped_entries().values())[:3]
    device, dtype, text = select_device().type, "fp32", common.DEFAULT_PROMPT
    results = {name: [] for name in COMPARE_PROBES}
    for entry in entries:
        model = models.get_model(entry, device, dtype)
        common._cached_loss(model, entry.key, device, dtype, text)
        for name in COMPARE_PROBES:
            results[name].append(common._cached_probe(model, entry.key, device, dtype, name, text, ()))
    names = [entry.name for entry in entries]
    for fig in (
        figures.depth_heatmaps(results["depth_weights"], names, "all"),
        figures.norm_growth_chart(results["stream_norms"], names),
    ):
        plotly.io.to_json(fig, validate=False)
    figures.retrieval_summary(results["depth_retrieval"], names)


def _run() -> None:
    try:
        warm_default_view()
    except Exception:  # noqa: BLE001 (the page then computes it itself, and says what failed)
        LOG.warning("warming the default view failed", exc_info=True)


_lock = threading.Lock()
_thread: threading.Thread | None = None


def start() -> threading.Thread:
    """Starts ``warm_default_view`` in a background thread, once per process; returns that thread."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="attnres-warm", daemon=True)
            _thread.start()
        return _thread
