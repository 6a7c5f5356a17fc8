"""Managers: the SLA report (availability and p99 against target, error budget, burn
rate) with a chart and CSV export. Managers and admins only.

Page convention: see :mod:`console.pages.ops_compensation`. Metrics come from
``platform.observability.query`` and targets from ``platform.stability.map_store``. The
window lives in the URL (``?window=7d``); counts are the counters' increase over it
(:mod:`console.reports.sla`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from console.panel import panel
from console.reports.charts import MET, MISSED, NO_DATA, sla_chart
from console.reports.context import page_context
from console.reports.sla import (
    WINDOW_NAMES,
    WINDOWS,
    display_rows,
    has_traffic,
    sla_csv,
    sla_report,
)
from console.urlstate import url_select

DEFAULT_WINDOW = "30d"


def _query(platform: Any) -> Any:
    return getattr(getattr(platform, "observability", None), "query", None)


def _dmap(platform: Any) -> Any:
    store = getattr(getattr(platform, "stability", None), "map_store", None)
    return store.load() if store is not None else None


def _styled(rows: list[dict[str, Any]]) -> Any:
    """The table with the status cell green (met) or red (missed)."""
    import pandas as pd

    colours = {
        "met": f"background-color: {MET}; color: white",
        "missed": f"background-color: {MISSED}; color: white",
    }
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.style.map(lambda v: colours.get(v, ""), subset=["status"])


def _render_report(query: Any, dmap: Any, window: str) -> None:
    now = time.time()
    rows = sla_report(query, dmap, now=now, window_s=WINDOWS[window])
    start = datetime.fromtimestamp(now - WINDOWS[window], UTC)
    st.caption(
        f"{start:%Y-%m-%d %H:%M} … {datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M} UTC."
        " Requests are counted, not estimated: the counters' increase over the window."
    )
    if not has_traffic(rows):
        st.info(NO_DATA)
    missed = [r for r in rows if r.met is False]
    if missed:
        st.error(f"{len(missed)} of {sum(r.met is not None for r in rows)} targets missed.")
    elif has_traffic(rows):
        st.success("Every target with traffic was met.")
    st.dataframe(_styled(display_rows(rows)), hide_index=True, key="sla_table")
    fig = sla_chart(rows)
    if fig is not None:
        st.plotly_chart(fig, key="sla_chart")
    st.download_button(
        "Download SLA CSV",
        sla_csv(rows),
        file_name=f"sla_report_{window}.csv",
        mime="text/csv",
        key="sla_dl",
    )


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    if not c.can("mgr"):
        st.error("The SLA report is for managers and admins.")
        return
    st.title("SLA report")
    window = url_select(
        "Window",
        list(WINDOWS),
        key="window",
        default=DEFAULT_WINDOW,
        format_func=lambda w: WINDOW_NAMES[w],
    )
    query = _query(c.platform)
    if query is None:
        st.warning("No metrics source is configured.")
        return
    report, targets = st.container(), st.container()
    dmap = None
    with targets, panel(None, "database"):  # drawn below the report, read first
        st.caption(
            "Targets: the SLO spec's objectives (alerts/slo/paywatch.slo.yaml, the ones the "
            "alerts burn), else each resource's sla_target in the dependency map (else 99.9 %)."
        )
        dmap = _dmap(c.platform)
    with report, panel("Service levels", "metrics"):
        _render_report(query, dmap, window)


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("mgr")
    render(platform(), _user)
