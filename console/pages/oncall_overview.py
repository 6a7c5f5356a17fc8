"""On-call overview: core links, channel health, alerts, backlogs, guard fallbacks."""

from __future__ import annotations

import streamlit as st

from console.pages import fmt, now, platform, require
from console.views.overview import (
    HEALTH_COLOURS,
    active_alerts,
    backlogs,
    link_rates,
    overview,
    sparkline,
)

require("oncall")
st.title("Overview")
window = st.select_slider(
    "Window",
    options=[60, 300, 900, 3600],
    value=300,
    format_func=lambda s: f"{s // 60} min",
    key="overview_window",
)


@st.fragment(run_every=5)
def live() -> None:
    p = platform()
    t = now()
    data = overview(p.observability.query, t, pay_orgs=p.settings.pay_orgs, window=window)
    st.subheader("Core links")
    rates = link_rates(p.observability.query, start=t - 1800, end=t, points=30)
    for row in data["links"]:
        cols = st.columns([2, 1, 1, 1, 3])
        colour = HEALTH_COLOURS[row["health"]]
        cols[0].markdown(
            f"<span style='color:{colour}'>●</span> **{row['step']}**", unsafe_allow_html=True
        )
        cols[1].metric("req/s", fmt(row["rate"], ".2f"), label_visibility="collapsed")
        cols[2].metric(
            "success",
            fmt(None if row["success"] is None else row["success"] * 100, ".2f") + "%",
            label_visibility="collapsed",
        )
        cols[3].metric(
            "p99",
            fmt(None if row["p99_s"] is None else row["p99_s"] * 1000, ".0f") + " ms",
            label_visibility="collapsed",
        )
        cols[4].plotly_chart(
            sparkline(rates.get(row["step"], []), colour=colour),
            key=f"spark_{row['step']}",
            config={"displayModeBar": False},
        )
    left, right = st.columns(2)
    with left:
        st.subheader("Channel health")
        st.dataframe(data["channels"], hide_index=True, key="channels")
        st.subheader("Guard fallbacks")
        if data["guard"]:
            st.dataframe(data["guard"], hide_index=True, key="guard")
        else:
            st.caption("No degraded or fallback calls in the window.")
    with right:
        st.subheader("Active alerts")
        alerts = active_alerts(p.db.engine)
        if alerts:
            st.dataframe(alerts, hide_index=True, key="alerts")
        else:
            st.success("No active alerts.")
        st.subheader("Backlogs")
        b = backlogs(p.db.engine)
        c = st.columns(3)
        c[0].metric("Compensation pending", b["compensation"]["pending"])
        c[1].metric("Notifications pending", b["notifications_pending"])
        c[2].metric("Pending postings", b["pending_postings"])
        st.dataframe(
            [{"status": k, "tasks": v} for k, v in b["compensation"].items()],
            hide_index=True,
            key="comp_backlog",
        )


live()
