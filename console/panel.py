"""Panels that fail alone: one source down never takes the page (or a traceback) with it.

Every panel of a page reads its data inside ``with panel("Core links", "metrics"):``.
When the read fails, the panel shows one short line naming the source that is down and
the page goes on with its other panels; the traceback goes to the console's log only.
A panel that read its data says when (``updated HH:MM:SS UTC``), so an on-call engineer
knows how fresh a figure is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import streamlit as st

log = logging.getLogger("console.panel")

#: what a reader calls each source in the message (keys are what pages pass)
SOURCES = {
    "metrics": "the metrics source",
    "database": "the database",
    "prometheus": "Prometheus",
    "alertmanager": "Alertmanager",
    "sandbox": "the sandbox channel",
}


def source_name(source: str) -> str:
    return SOURCES.get(source, source)


@contextmanager
def panel(
    title: str | None, source: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Iterator[None]:
    """Run a panel's body; on failure show "<source> is unavailable" instead of it.

    ``title`` (optional) is drawn as a subheader first. Streamlit's own control flow
    (``st.stop``, ``st.rerun``) derives from ``BaseException`` and passes through.
    """
    if title:
        st.subheader(title)
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a panel fails alone, with no traceback shown
        log.warning("panel %r: %s unavailable", title, source, exc_info=True)
        st.warning(
            f"{source_name(source).capitalize()} is unavailable "
            f"({type(exc).__name__}); this panel will show again when it answers."
        )
        return
    st.caption(f"updated {clock():%H:%M:%S} UTC from {source_name(source)}")
