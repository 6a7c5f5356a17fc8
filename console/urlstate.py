"""Widgets whose value lives in the URL, so a view can be reloaded, bookmarked and shared.

``url_select("Window", WINDOWS, key="window", default="1h")`` reads its start value
from ``?window=…`` (when it is one of the options) and writes the chosen value back,
so the address bar always names what the page shows. Only view state goes in the URL
(page, window, filters), never a secret or a session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")


def url_value(key: str) -> str | None:
    """The URL's value for ``key``, if any."""
    value = st.query_params.get(key)
    return str(value) if value is not None else None


def _remember(key: str, text: str | None) -> None:
    if text is None or text == "":
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != text:
        st.query_params[key] = text


def url_select(
    label: str,
    options: Sequence[T],
    *,
    key: str,
    default: T | None = None,
    format_func: Callable[[T], str] = str,
    widget: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> T:
    """A selectbox (or ``widget``: ``st.radio``, ``st.segmented_control`` …) over
    ``options`` whose choice is kept in ``?key=``."""
    by_text = {str(o): o for o in options}
    start = by_text.get(url_value(key) or "", default if default is not None else options[0])
    index = list(options).index(start) if start in options else 0
    chosen = (widget or st.selectbox)(
        label, options, index=index, key=f"url_{key}", format_func=format_func, **kwargs
    )
    _remember(key, str(chosen) if chosen is not None else None)
    return chosen


def url_text(label: str, *, key: str, default: str = "", **kwargs: Any) -> str:
    """A text input kept in ``?key=``."""
    value = st.text_input(label, value=url_value(key) or default, key=f"url_{key}", **kwargs)
    _remember(key, value)
    return value


def url_date(label: str, *, key: str, default: date, **kwargs: Any) -> date:
    """A date picker kept in ``?key=YYYY-MM-DD`` (an unreadable value falls back)."""
    try:
        start = date.fromisoformat(url_value(key) or "")
    except ValueError:
        start = default
    value = st.date_input(label, value=start, key=f"url_{key}", **kwargs)
    picked = value if isinstance(value, date) else default
    _remember(key, picked.isoformat())
    return picked
