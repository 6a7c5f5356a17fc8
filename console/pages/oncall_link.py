"""Link drill-down: one core-link step over a chosen window, for all pay orgs or one.

The filters (``?link=…&window=…&org=…``) live in the URL and apply to every figure, the
headline included. The figures refresh themselves and say when they were read; with the
metrics source down they say so instead of failing the page.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from console.pages import fmt, now, platform, require
from console.panel import panel
from console.urlstate import url_select
from console.views.overview import STEPS, link_chart, link_series, link_stats
from stability.plan_steps import annotations_between

#: URL value → (label, seconds)
WINDOWS = {
    "15m": ("15 min", 900),
    "1h": ("1 hour", 3600),
    "6h": ("6 hours", 21600),
    "24h": ("24 hours", 86400),
}
ALL = ""  #: the pay-org option meaning every pay org (kept out of the URL)
EVERY = 15  #: seconds between refreshes


@st.fragment(run_every=EVERY)
def figures(step: str, window: str, org: str) -> None:
    label, span = WINDOWS[window]
    scope = f"{step} · {org or 'all pay orgs'} · last {label}"
    with panel("Headline", "metrics"):
        p, t = platform(), now()
        stats = link_stats(
            p.observability.query, t, window=span, steps=(step,), pay_org=org or None
        )[0]
        st.caption(scope)
        m = st.columns(3)
        m[0].metric("Requests/s", fmt(stats["rate"], ".2f"))
        success = None if stats["success"] is None else stats["success"] * 100
        m[1].metric("Success", f"{fmt(success, '.2f')} %" if success is not None else "–")
        p99 = None if stats["p99_s"] is None else stats["p99_s"] * 1000
        m[2].metric("p99", f"{fmt(p99, ',.0f')} ms" if p99 is not None else "–")
        if stats["rate"] is None:
            st.info(
                "No traffic recorded for this link"
                + (" through this pay org" if org else "")
                + " in the window."
            )
    with panel("Over time", "metrics"):
        p, t = platform(), now()
        series = link_series(
            p.observability.query, step, start=t - span, end=t, points=120, pay_org=org or None
        )
        span_of = (datetime.fromtimestamp(t - span, UTC), datetime.fromtimestamp(t, UTC))
        notes = annotations_between(p.db.engine, *span_of)  # switch plans in force
        st.plotly_chart(link_chart(series, title=scope, notes=notes), key="link_chart")


require("oncall")
st.title("Link drill-down")
orgs = [ALL, *platform().settings.pay_orgs]
c1, c2, c3 = st.columns(3)
with c1:
    step = url_select("Link", list(STEPS), key="link", default="pay")
with c2:
    window = url_select(
        "Window", list(WINDOWS), key="window", default="1h", format_func=lambda w: WINDOWS[w][0]
    )
with c3:
    org = url_select(
        "Pay org", orgs, key="org", default=ALL, format_func=lambda o: o or "all pay orgs"
    )
figures(step, window, org)
