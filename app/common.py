"""What every page shares: the sidebar (models, prompt, device, dtype), cached probe runs with a
GPU out-of-memory fallback, prompt notices, and a chart with its download row.

Pages only wire: they ask ``probe(...)`` for measurements and ``figures`` for plots.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st

import probes
from app import state
from app.compute import run_with_oom_fallback
from app.models import ModelEntry, choices, get_model
from attnres.device import DTYPES, available_devices, dtype_name, select_device
from probes.registry import PROBES, TRACED
from probes.sweep import COMPARE_VIEW

DEFAULT_PROMPT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles"
)
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Settings:
    """The sidebar's choices."""

    models: tuple[ModelEntry, ...]
    prompt: str
    device: str
    dtype: str  # "fp32" on CPU whatever was asked


def plain(text) -> str:
    """User or model text made inert for st.markdown-based elements (no markdown, no HTML).

    Markdown punctuation is backslash-escaped; ``&``, ``<`` and ``>`` become HTML entities instead
    (a backslash before ``>`` would stop the entity from being read, so ``>`` showed as "&gt;").
    """
    entities = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", entities)


def header(title: str, intro: str) -> None:
    """The page's stable title and one paragraph of what it shows."""
    st.title(title)
    st.caption(intro)


def sidebar(multi: bool = True, default: tuple[str, ...] | None = None) -> Settings:
    """Draws the shared sidebar and returns its choices (kept across pages and in the URL)."""
    entries = choices()
    names = list(entries)
    with st.sidebar:
        if multi:
            state.init("models", list(default or names[:3]), state.all_in(names), many=True)
            st.multiselect("Models (up to 3)", names, key="models", max_selections=3)
            picked = st.session_state["models"]
        else:
            state.init("model", (default or names[-1:])[0], state.choice_of(names))
            st.selectbox("Model", names, key="model")
            picked = [st.session_state["model"]]
        state.init("prompt", DEFAULT_PROMPT, lambda v: isinstance(v, str))
        st.text_area("Prompt", key="prompt", height=140, max_chars=MAX_PROMPT_CHARS)
        device, dtype = _device_widgets()
    state.keep("models" if multi else "model", "prompt", "device", "dtype")
    return Settings(tuple(entries[n] for n in picked), st.session_state["prompt"], device, dtype)


def _device_widgets() -> tuple[str, str]:
    devices = available_devices()
    state.init("device", select_device().type, state.choice_of(devices))
    st.selectbox("Device", devices, key="device")
    state.init("dtype", "fp32", state.choice_of(list(DTYPES)))
    st.selectbox("Precision", list(DTYPES), key="dtype")
    device = st.session_state["device"]
    if device == "cpu" and st.session_state["dtype"] != "fp32":
        st.caption("CPU always computes in fp32.")
    return device, dtype_name(device, st.session_state["dtype"])


def need_models(settings: Settings, low: int = 1) -> bool:
    """Shows a warning and returns False when fewer than ``low`` models or no prompt are chosen."""
    if len(settings.models) < low:
        st.warning(f"Choose at least {low} model(s) in the sidebar.")
        return False
    if not settings.prompt.strip():
        st.warning("The prompt is empty; type some text for the models to read.")
        return False
    return True


def encode(entry: ModelEntry, settings: Settings) -> probes.Prompt | None:
    """The prompt as ``entry`` reads it; notices (unknown characters, truncation) shown as warnings."""
    try:
        prompt = probes.encode_prompt(get_model(entry), settings.prompt)
    except probes.PromptError as exc:
        prompt_problem(entry, exc)
        return None
    for notice in prompt.notices:
        st.info(f"{plain(entry.name)}: {plain(notice)}")
    return prompt


def prompt_problem(entry: ModelEntry, exc: Exception) -> None:
    """A prompt the model cannot read, as a warning (a model without tokenizer: where to pick one)."""
    hint = " Pick one in the Checkpoint inspector." if get_model(entry).tokenizer is None else ""
    st.warning(f"{plain(entry.name)}: {plain(exc)}.{hint}")


# Figures and table rows shared by every session (a few views of a few prompts each).
MAX_FIGURES = 128
# The home page's numbers: the loss, then the probes of its three views (one shared trace).
COMPARE_PROBES = ("prompt_loss", *COMPARE_VIEW)
_BLANK = go.Figure(
    layout={"xaxis": {"visible": False}, "yaxis": {"visible": False}, "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)", "margin": {"l": 0, "r": 0, "t": 0, "b": 0}}
)  # fmt: skip

# Traces are whole forward passes (every h_l and v_l); a few suffice for the probes of the prompts
# being looked at now, shared by every session.
MAX_TRACES = 6


@st.cache_resource(show_spinner=False, max_entries=MAX_TRACES)
def _cached_trace(_model, model_key: str, device: str, dtype: str, text: str) -> probes.Trace:
    return probes.trace(_model, text)


def _inputs(model, model_key: str, device: str, dtype: str, name: str, text: str):
    """What a probe reads: the prompt's shared trace for a traced probe (one forward pass for all of
    them), else the prompt itself."""
    if name not in TRACED:
        return text
    traced = _cached_trace(model, model_key, device, dtype, text)
    return traced if traced.model is model else text  # a model loaded again since: its own forward


@st.cache_data(show_spinner=False, max_entries=512)
def _cached_probe(_model, model_key: str, device: str, dtype: str, name: str, text: str, params: tuple):
    return PROBES[name](_model, _inputs(_model, model_key, device, dtype, name, text), **dict(params))


def _run(task: Callable, entry: ModelEntry, settings: Settings, what: str):
    """Runs ``task(model, device, dtype)`` with a spinner, the OOM fallback and readable errors."""

    def on(device: str):
        dtype = dtype_name(device, settings.dtype)
        return task(get_model(entry, device, dtype), device, dtype)

    try:
        with st.spinner(f"Computing {what} for {entry.name}…"):
            result, used = run_with_oom_fallback(on, settings.device)
    except probes.PromptError as exc:
        prompt_problem(entry, exc)
        return None
    except Exception as exc:  # noqa: BLE001 (a page shows a sentence, never a traceback)
        st.error(f"{plain(what)} could not be computed for {plain(entry.name)}: {plain(exc)}")
        return None
    if used != settings.device:
        st.warning(
            f"The {settings.device} device ran out of memory; its cache was emptied and "
            f"{plain(what)} for {plain(entry.name)} was computed on the CPU instead."
        )
    return result


def compute_probe(name: str, entry: ModelEntry, device: str, dtype: str, text: str, params: tuple = ()):
    """A probe's result on ``device`` in ``dtype`` (as ``dtype_name`` gives it), from or into the
    caches every session shares; no spinner, errors raised."""
    dtype = dtype_name(device, dtype)
    return _cached_probe(get_model(entry, device, dtype), entry.key, device, dtype, name, text, params)


def probe(name: str, entry: ModelEntry, settings: Settings, **params):
    """A probe's result for one model on the sidebar prompt (cached by model, prompt and params)."""
    items = tuple(sorted(params.items()))
    return _run(
        lambda model, device, dtype: _cached_probe(
            model, entry.key, device, dtype, name, settings.prompt, items
        ),
        entry,
        settings,
        name.replace("_", " "),
    )


def loss(entry: ModelEntry, settings: Settings) -> float | None:
    """Mean next-character loss of one model on the sidebar prompt (cached)."""
    return _run(
        lambda model, device, dtype: _cached_probe(
            model, entry.key, device, dtype, "prompt_loss", settings.prompt, ()
        ),
        entry,
        settings,
        "the loss",
    )


@st.cache_resource(show_spinner=False, max_entries=MAX_FIGURES)
def _cached_figure(key: tuple, _build: Callable):
    return _build()


def shared_figure(key: tuple, build: Callable):
    """``build()`` (a figure or table rows) made once for every session that shows the same thing.

    ``key`` must say everything the result depends on (the builder, the models' keys, device,
    dtype, prompt, the view's choices). The object itself is shared, so it is never changed after
    it is built (``st.plotly_chart`` and the downloads only read it).
    """
    return _cached_figure(key, build)


def view_key(settings: Settings, *choices) -> tuple:
    """What a page's figure of the chosen models depends on: their keys and names, device, dtype,
    prompt, and the page's own ``choices``."""
    models = tuple((entry.key, entry.name) for entry in settings.models)
    return (models, settings.device, settings.dtype, settings.prompt, *choices)


def chart_placeholder():
    """A blank slot of a chart's default height holding an empty, invisible plotly chart.

    Sent before a page computes: the browser starts loading plotly.js (fetched when the first chart
    element appears) while the numbers are computed. The page draws its chart into the slot, or
    empties it.
    """
    slot = st.empty()
    slot.plotly_chart(_BLANK, key="chart_placeholder", theme=None, config={"staticPlot": True})
    return slot


def names_of(settings: Settings) -> list[str]:
    """Display names of the chosen models."""
    return [entry.name for entry in settings.models]


@st.cache_data(show_spinner=False, max_entries=64)
def _cached_series(paths: tuple[str, ...], steps: tuple[int, ...], name: str, text: str, device: str):
    return probes.over_snapshots(list(paths), PROBES[name], text, steps=list(steps), device=device)


def snapshot_series(entry: ModelEntry, snapshots: tuple[tuple[int, str], ...], name: str, settings: Settings):
    """A probe over a run's snapshots ((step, path) pairs), loaded one at a time (cached)."""
    steps, paths = zip(*snapshots, strict=True)
    return _run(
        lambda model, device, dtype: _cached_series(
            tuple(paths), tuple(steps), name, settings.prompt, device
        ),
        entry,
        settings,
        f"{name.replace('_', ' ')} over snapshots",
    )


def token_select(label: str, key: str, tokens: tuple[str, ...], special: int, special_text: str) -> int:
    """Selectbox of the prompt's token positions plus one special value first (its default; e.g.
    "mean over tokens"), kept in the URL as ``key``; returns the chosen value."""
    options = [special, *range(len(tokens))]
    state.init(key, special, state.choice_of(options), parse=int)
    st.selectbox(
        label,
        options,
        key=key,
        format_func=lambda i: special_text if i == special else f"{i}: {tokens[i]!r}",
    )
    state.keep(key)
    return st.session_state[key]
