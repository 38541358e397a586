"""A chart with its download row: PNG, standalone HTML, and the numbers as CSV or JSON."""

from __future__ import annotations

import math

import streamlit as st

from figures import export

EMPTY_CELL = "—"  # a table's missing value (no third source, a NaN cosine)
PNG_BROKEN = "_png_broken"  # session-state: why PNG export failed, once it has


def _png_of(fig):
    def build() -> bytes:
        try:
            return export.to_png(fig)
        except Exception as exc:  # noqa: BLE001 (no renderer: tell the user on the next run)
            st.session_state[PNG_BROKEN] = f"{exc.__class__.__name__}"
            raise

    return build


def _as_bytes(data) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _payload(data):
    """JSON-ready form of a probe result, or of a dict / list of them."""
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if isinstance(data, dict):
        return {str(k): _payload(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_payload(v) for v in data]
    return data


def download_row(stem: str, fig=None, data=None, rows=None) -> None:
    """Download buttons for one chart: PNG and HTML of ``fig``, JSON of ``data``, CSV of ``rows``.

    Args:
        stem: file-name stem and widget-key stem (unique on the page).
        fig: the plotly figure, if any.
        data: a probe result (``to_dict()``) or any JSON-ready object.
        rows: a list of dicts for CSV.
    """
    columns = st.columns(4, gap="small")
    if fig is not None:
        if st.session_state.get(PNG_BROKEN):
            columns[0].caption(f"PNG export unavailable ({st.session_state[PNG_BROKEN]}); use HTML.")
        else:
            _download(columns[0], "PNG", _png_of(fig), stem, "png", "image/png")
        _download(columns[1], "HTML", lambda: _as_bytes(export.to_html(fig)), stem, "html", "text/html")
    if data is not None:  # converted only when the button is pressed: every run draws the row
        _download(
            columns[2],
            "JSON",
            lambda: _as_bytes(export.to_json(_payload(data))),
            stem,
            "json",
            "application/json",
        )
    if rows:
        _download(columns[3], "CSV", lambda: _as_bytes(export.to_csv(rows)), stem, "csv", "text/csv")


def _download(column, label: str, content, stem: str, ext: str, mime: str) -> None:
    """One download button; its file is <stem>.<ext> and its widget key dl_<ext>_<stem>."""
    column.download_button(label, content, f"{stem}.{ext}", mime, key=f"dl_{ext}_{stem}", on_click="ignore")


def chart(fig, stem: str, data=None, rows=None) -> None:
    """Shows a plotly figure full width with its download row underneath."""
    st.plotly_chart(fig, key=f"chart_{stem}", width="stretch")
    download_row(stem, fig=fig, data=data, rows=rows)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _shown(rows: list[dict]) -> list[dict]:
    """The rows as the table shows them: a column with gaps (no third source, a NaN cosine, no
    next token to rank) reads '—' there; Streamlit would print "None". Downloads keep the numbers."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    gappy = {c for c in columns if any(_is_missing(row.get(c)) for row in rows)}
    return [
        {
            c: (str(EMPTY_CELL if _is_missing(row.get(c)) else row[c]) if c in gappy else row[c])
            for c in columns
        }
        for row in rows
    ]


def table(rows: list[dict], stem: str, data=None) -> None:
    """Shows rows as a dataframe (text cells, never HTML) with JSON/CSV downloads."""
    if rows:
        st.dataframe(_shown(rows), key=f"table_{stem}", hide_index=True)
    else:
        st.caption("Nothing to list.")
    download_row(stem, data=data, rows=rows)
