"""Computations that take seconds: a progress bar, a Stop button, and results kept for every session.

``run(key, what, compute)`` calls ``compute(report)``; the computation calls ``report(done, total)``
between its chunks or steps, which moves the progress bar. Pressing Stop reruns the page (Streamlit
ends the running script at its next progress update) and marks ``key`` stopped in this session; the
page then shows a notice instead of starting the computation again. The same flag is checked at every
report, so a computation that was not interrupted there ends at the next one. Nothing is left half
done: results are stored only when complete, and another prompt or setting is another key.
``prefetch`` runs a page's probes of the chosen models that are slow (a real-size import) the same
way, into the caches the page then reads; the shipped samples never show a bar.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

import probes
from app import common
from app.common import Settings, plain
from app.compute import is_out_of_memory, run_with_oom_fallback
from app.models import get_model

T = TypeVar("T")
STOPPED = "_stopped_"  # session-state key: the keys whose computation this session stopped
MAX_RESULTS = 256
# Seconds slept at every progress report. Only the slow-probe browser test sets it, so that a
# computation on the small shipped models lasts long enough to be stopped.
DELAY_ENV = "ATTNRES_TEST_PROGRESS_DELAY_S"
# A page's probes of a model run under a progress bar when one forward pass is slow: parameters x
# prompt tokens above this (about a second on a CPU; the shipped samples at their whole context are
# some 40 times below it), or ACCELERATOR_SPEEDUP times it on a GPU.
SLOW_WORK = 1e10
ACCELERATOR_SPEEDUP = 50


class Cancelled(Exception):
    """The user pressed Stop."""


class _Store:
    """A bounded, thread-safe map of finished results (least recently used dropped first)."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable):
        with self.lock:
            if key not in self.items:
                return None
            self.items.move_to_end(key)
            return self.items[key]

    def put(self, key: Hashable, value) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def _store() -> _Store:
    return _Store(MAX_RESULTS)


def result(key: Hashable):
    """The stored result of ``key`` (any session's), or None."""
    return _store().get(key)


def keep(key: Hashable, value) -> None:
    """Stores a finished result under ``key``."""
    _store().put(key, value)


def is_stopped(key: Hashable) -> bool:
    """True when this session pressed Stop on ``key`` (and has not asked to continue)."""
    return key in st.session_state.get(STOPPED, set())


def stop(key: Hashable) -> None:
    """Marks ``key`` stopped for this session (the Stop button's callback)."""
    st.session_state[STOPPED] = st.session_state.get(STOPPED, set()) | {key}


def resume(key: Hashable) -> None:
    """Lets ``key`` run again (the Continue button's callback)."""
    st.session_state[STOPPED] = st.session_state.get(STOPPED, set()) - {key}


def widget_key(prefix: str, key: Hashable) -> str:
    """A stable widget key for ``key``."""
    return f"{prefix}_{hashlib.sha1(repr(key).encode()).hexdigest()[:12]}"


def run(key: Hashable, what: str, compute: Callable, device: str = "cpu", where=None) -> T | None:
    """Runs ``compute(report, device)`` under a progress bar with a Stop button; None when stopped
    or failed. On GPU out-of-memory it runs again on the CPU and says so.

    Args:
        key: what is computed (model, prompt, setting); Stop marks it.
        what: a short description for the bar, e.g. "Integrated gradients, 16 steps".
        compute: the computation; it calls ``report(done, total)`` between chunks or steps.
        device: the device asked for.
        where: a container to draw the bar and button in (default: the page, here).
    """
    slot = (where or st).empty()
    box = slot.container()
    bar = box.progress(0.0, text=f"{what}…")
    box.button("Stop", key=widget_key("stop", key), on_click=stop, args=(key,))
    delay = float(os.environ.get(DELAY_ENV) or 0)

    def report(done: int, total: int) -> None:
        if is_stopped(key):
            raise Cancelled
        if delay:
            time.sleep(delay)
        bar.progress(min(1.0, done / max(total, 1)), text=f"{what}: {done} of {total}")

    try:
        value, used = run_with_oom_fallback(lambda on: compute(report, on), device)
    except Cancelled:
        slot.empty()
        return None
    except Exception as exc:  # noqa: BLE001 (a page shows a sentence, never a traceback)
        slot.error(f"{plain(what)} could not be computed: {plain(exc)}")
        return None
    slot.empty()
    if used != device:
        (where or st).warning(f"The {device} device ran out of memory; {plain(what)} ran on the CPU instead.")
    return value


def stopped_notice(key: Hashable, text: str, where=None) -> None:
    """The notice a stopped computation leaves, with a button that starts it again."""
    box = (where or st).container()
    box.info(text)
    box.button("Continue", key=widget_key("continue", key), on_click=resume, args=(key,))


def is_slow(model, n_tokens: int, device: str) -> bool:
    """True when ``model`` reading ``n_tokens`` on ``device`` takes long enough to show progress."""
    work = sum(p.numel() for p in model.parameters()) * n_tokens
    return work > SLOW_WORK * (1 if device == "cpu" else ACCELERATOR_SPEEDUP)


def _tokens(model, text: str) -> int:
    try:
        return len(probes.encode_prompt(model, text).ids)
    except probes.PromptError:  # the page says so when it asks for the numbers
        return 0


def _compute_each(steps: list, settings: Settings, report, device: str) -> bool:
    """Runs each (model entry, probe name) into the shared caches, reporting between them. A probe
    that fails is left to the page, which asks for it again and says why."""
    for done, (entry, name) in enumerate(steps):
        report(done, len(steps))
        try:
            common.compute_probe(name, entry, device, settings.dtype, settings.prompt)
        except Exception as exc:  # noqa: BLE001 (out of memory goes to the CPU fallback)
            if is_out_of_memory(exc):
                raise
    report(len(steps), len(steps))
    return True


def prefetch(page: str, settings: Settings, names: tuple[str, ...]) -> bool:
    """Computes a page's probes ``names`` (through the caches ``common.probe`` reads) under a progress
    bar with a Stop button, for the chosen models that are slow (``is_slow``); nothing for the others.

    Returns:
        False when the user stopped it (a notice with a Continue button is shown instead), else True:
        the page then draws from the caches.
    """
    slow = [
        e
        for e in settings.models
        if is_slow(get_model(e), _tokens(get_model(e), settings.prompt), settings.device)
    ]
    if not slow:
        return True
    key = ("prefetch", page, tuple(e.key for e in slow), settings.device, settings.dtype, settings.prompt)
    if result(key) is not None:
        return True
    models = ", ".join(e.name for e in slow)
    if is_stopped(key):
        stopped_notice(key, f"Computing {page} for {models} was stopped.")
        return False
    steps = [(entry, name) for entry in slow for name in names]
    what = f"Computing {page} for {models}"
    done = run(
        key, what, lambda report, device: _compute_each(steps, settings, report, device), settings.device
    )
    if done:
        keep(key, True)
    return not is_stopped(key)
