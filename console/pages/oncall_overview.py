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
    # 10 minutes: a freshly started platform shows its lines within a minute or two
    rates = link_rates(p.observability.query, start=t - 600, end=t, points=30)
    widths = [2, 1, 1, 1, 3]
    for col, head in zip(st.columns(widths), ("link", "req/s", "success", "p99",
                                                "req/s, last 10 min"), strict=True):  # fmt: skip
        col.caption(head)
    for row in data["links"]:
        cols = st.columns(widths, vertical_alignment="center")
        colour = HEALTH_COLOURS[row["health"]]
        cols[0].markdown(
            f"<span style='color:{colour}'>●</span> **{row['step']}**", unsafe_allow_html=True
        )
        success = None if row["success"] is None else row["success"] * 100
        p99_ms = None if row["p99_s"] is None else row["p99_s"] * 1000
        cols[1].markdown(fmt(row["rate"], ".2f"))
        cols[2].markdown(f"{fmt(success, '.2f')} %" if success is not None else "–")
        cols[3].markdown(f"{fmt(p99_ms, ',.0f')} ms" if p99_ms is not None else "–")
        cols[4].plotly_chart(
            sparkline(rates.get(row["step"], []), colour=colour, height=40),
            key=f"spark_{row['step']}",
            config={"displayModeBar": False, "staticPlot": True},
        )
    left, right = st.columns(2)
    with left:
        st.subheader("Channel health")
        st.dataframe(data["channels"], hide_index=True, key="channels", column_config={
            "rate": st.column_config.NumberColumn("req/s", format="%.2f"),
            "success": st.column_config.NumberColumn("success", format="percent"),
            "p99_s": st.column_config.NumberColumn("p99 (s)", format="%.3f"),
        })  # fmt: skip
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
