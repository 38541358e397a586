"""Once per server process: every library the pages need, imported before any session uses it, and
the default Compare view computed in the background.

Streamlit runs each session's script in its own thread. A library that one run imports lazily sits
half-built in ``sys.modules`` while its import runs, and some libraries look there instead of
importing: plotly asks ``sys.modules`` for pandas, numpy and PIL.Image whenever it validates or
serialises a figure, Streamlit for matplotlib.pyplot after every run. So a first import of pandas in
one session (a table) made another session's figure fail with "partially initialized module
'pandas' has no attribute 'Series'".

In two steps, the home page first. ``streamlit_app.py`` imports this module before anything else,
so the first run of every session waits on the import lock until the imports below (what the
Compare page needs, and every library plotly or Streamlit looks up in ``sys.modules``) have
finished once. The libraries only other pages need (Captum, kaleido, scipy.stats, tokenizers, the
hub client) come after the default view: ``import_the_rest`` imports them once per process, under
a lock, called by the warm-up thread once the default view is computed and by ``streamlit_app.py``
before any other page runs and after every Compare run. None of them is looked up in
``sys.modules`` by plotly or Streamlit, so a session drawing figures meanwhile never meets one
half-built; and after both steps no page imports anything. ``python -m app.serve`` imports this
module and calls ``start`` as the server starts, so the first visitor finds the imports done and the
default view cached.
"""

from __future__ import annotations

import logging
import threading

# What the Compare page needs, or plotly and Streamlit look up in sys.modules: imported here,
# completely, before any session runs.
import matplotlib.pyplot  # noqa: F401  (Streamlit closes its figures after each run)
import narwhals  # noqa: F401  (plotly's dataframe checks)
import numpy as np
import pandas  # noqa: F401  (plotly's array checks; st.dataframe)
import PIL.Image  # noqa: F401  (plotly's JSON encoder)
import plotly.graph_objects as go
import plotly.io
import plotly.offline  # noqa: F401  (HTML downloads inline plotly.js)
import pyarrow  # noqa: F401  (st.dataframe)
import torch  # noqa: F401

import attnres.importers  # noqa: F401
from app import common, models
from app.views import compare
from attnres.device import select_device
from figures import style

LOG = logging.getLogger(__name__)


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
    """Loads the default models and computes the home page's numbers, figures and table for the
    default prompt, into the caches the page reads (a session asking meanwhile waits for them)."""
    entries = list(models.shipped_entries().values())[:3]
    device, dtype, text = select_device().type, "fp32", common.DEFAULT_PROMPT
    results = {name: [] for name in common.COMPARE_PROBES}
    for entry in entries:
        model = models.get_model(entry, device, dtype)
        for name in common.COMPARE_PROBES:
            results[name].append(common._cached_probe(model, entry.key, device, dtype, name, text, ()))
    settings = common.Settings(tuple(entries), text, device, dtype)
    for fig in (
        compare.depth_figure(settings, results["depth_weights"], "all", None),
        compare.norms_figure(settings, results["stream_norms"]),
    ):
        plotly.io.to_json(fig, validate=False)
    compare.retrieval_rows(settings, results["depth_retrieval"])


_imports_lock = threading.Lock()
_imported_the_rest = False


def import_the_rest() -> None:
    """Imports, once per process, the libraries that only pages other than Compare need (lazily
    imported by a probe, a page or a download). Callers wait until it has finished."""
    global _imported_the_rest
    with _imports_lock:
        if _imported_the_rest:
            return
        import captum.attr  # noqa: F401, PLC0415  (attribution; imports IPython: the slowest)
        import kaleido  # noqa: F401, PLC0415  (PNG downloads)
        import scipy.stats  # noqa: F401, PLC0415  (corpus intervals, dilution metrics)
        import tokenizers  # noqa: F401, PLC0415  (imported models' tokenizers)
        from huggingface_hub import scan_cache_dir  # noqa: F401, PLC0415  (the inspector; lazy package)

        import attnres.hf_tokenizer  # noqa: F401, PLC0415

        _imported_the_rest = True


def _run() -> None:
    try:
        warm_default_view()
    except Exception:  # noqa: BLE001 (the page then computes it itself, and says what failed)
        LOG.warning("warming the default view failed", exc_info=True)
    import_the_rest()


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
