"""Managers: the SLA report (availability and p99 against target, error budget, burn
rate) with a chart and CSV export. Managers and admins only.

Page convention: see :mod:`console.pages.ops_compensation`. Metrics come from
``platform.observability.query`` and targets from ``platform.stability.map_store``.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from console.reports.charts import sla_chart
from console.reports.context import page_context, table
from console.reports.sla import sla_csv, sla_report

WINDOWS = {"30 days": 30 * 86400.0, "7 days": 7 * 86400.0, "1 day": 86400.0,
           "1 hour": 3600.0}  # fmt: skip


def _sources(platform: Any) -> tuple[Any, Any]:
    obs = getattr(platform, "observability", None)
    query = getattr(obs, "query", None)
    store = getattr(getattr(platform, "stability", None), "map_store", None)
    dmap = store.load() if store is not None else None
    return query, dmap


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    if not c.can("mgr"):
        st.error("The SLA report is for managers and admins.")
        return
    st.title("SLA report")
    query, dmap = _sources(c.platform)
    if query is None:
        st.warning("No metrics source is configured.")
        return
    label = st.selectbox("Window", list(WINDOWS), key="sla_window")
    rows = sla_report(query, dmap, now=time.time(), window_s=WINDOWS[label])
    st.dataframe(table(rows), hide_index=True)
    st.plotly_chart(sla_chart(rows), key="sla_chart")
    st.download_button("Download SLA CSV", sla_csv(rows), file_name="sla_report.csv",
                       mime="text/csv", key="sla_dl")  # fmt: skip


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("mgr")
    render(platform(), _user)
