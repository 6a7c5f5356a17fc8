"""Link drill-down: one core-link step over a chosen time range."""

from __future__ import annotations

import streamlit as st

from console.pages import fmt, now, platform, require
from console.views.overview import STEPS, link_chart, link_series, link_stats

RANGES = {"15 min": 900, "1 hour": 3600, "6 hours": 21600, "24 hours": 86400}

require("oncall")
st.title("Link drill-down")
p = platform()
c1, c2, c3 = st.columns(3)
step = c1.selectbox("Step", STEPS, key="link_step")
label = c2.selectbox("Time range", list(RANGES), index=1, key="link_range")
org = c3.selectbox("Pay org", ["(all)", *p.settings.pay_orgs], key="link_org")
t = now()
span = RANGES[label]
series = link_series(
    p.observability.query,
    step,
    start=t - span,
    end=t,
    points=120,
    pay_org=None if org == "(all)" else org,
)
stats = next(
    r for r in link_stats(p.observability.query, t, window=min(span, 3600)) if r["step"] == step
)
m = st.columns(3)
m[0].metric("Requests/s", fmt(stats["rate"], ".2f"))
m[1].metric(
    "Success", fmt(None if stats["success"] is None else stats["success"] * 100, ".2f") + "%"
)
m[2].metric("p99", fmt(None if stats["p99_s"] is None else stats["p99_s"] * 1000, ".0f") + " ms")
st.plotly_chart(link_chart(series, title=f"{step} — last {label}"), key="link_chart")
