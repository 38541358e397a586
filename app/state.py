"""View state: widget values that survive page switches and live in the URL (``st.query_params``).

A link reproduces a view: on a session's first run a widget starts from its query parameter (when
valid), later from the value it had on the page last shown; after the widgets are drawn the page
writes its current values back to the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

KEEP = "_keep_"  # session-state prefix of values kept across page switches


def _from_query(key: str, parse: Callable[[str], object] | None, many: bool):
    if key not in st.query_params:
        return None
    raw = st.query_params.get_all(key) if many else st.query_params.get(key)
    try:
        return [parse(v) if parse else v for v in raw] if many else (parse(raw) if parse else raw)
    except (TypeError, ValueError):
        return None


def init(
    key: str,
    default,
    valid: Callable[[object], bool] = lambda value: True,
    parse: Callable[[str], object] | None = None,
    many: bool = False,
) -> None:
    """Gives widget ``key`` its starting value: kept value, else a valid query parameter, else default."""
    if key in st.session_state and valid(st.session_state[key]):
        # re-assigning makes a widget of another page adopt the value (widget state is per page)
        st.session_state[key] = st.session_state[key]
        return
    for candidate in (st.session_state.get(KEEP + key), _from_query(key, parse, many)):
        if candidate is not None and valid(candidate):
            st.session_state[key] = candidate
            return
    st.session_state[key] = default


def keep(*keys: str) -> None:
    """Remembers widget values across page switches and writes them to the URL."""
    for key in keys:
        value = st.session_state.get(key)
        st.session_state[KEEP + key] = value
        _write_query(key, value)


def _write_query(key: str, value) -> None:
    if value is None:
        st.query_params.pop(key, None)
    elif isinstance(value, (list, tuple)):
        st.query_params[key] = [str(v) for v in value]
    elif str(value) != st.query_params.get(key):
        st.query_params[key] = str(value)


def choice_of(options: Sequence) -> Callable[[object], bool]:
    """A validity check: the value is one of ``options``."""
    return lambda value: value in options


def all_in(options: Sequence, low: int = 1, high: int = 3) -> Callable[[object], bool]:
    """A validity check: a list of ``low..high`` distinct members of ``options``."""
    return lambda values: (
        isinstance(values, list)
        and low <= len(values) <= high
        and len(set(values)) == len(values)
        and all(v in options for v in values)
    )


def in_range(low: float, high: float) -> Callable[[object], bool]:
    """A validity check: a number in ``[low, high]``."""
    return lambda value: isinstance(value, (int, float)) and low <= value <= high
