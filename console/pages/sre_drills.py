"""Drills: set the sandbox channel's fault knobs and watch the effect on the channel;
the reports of scripted drills (``paywatch simulate --drill``): list and details."""

from __future__ import annotations

import httpx
import streamlit as st

from console.auth import can
from console.pages import audited, fmt, now, platform, require, sandbox_token
from console.simulator.report import detail_tables, get_report, list_reports
from console.views.overview import channel_health, link_chart, link_series
from console.views.switches import knob_request

user = require("sre")
st.title("Drills")
p = platform()
org = st.selectbox("Pay org", p.settings.pay_orgs, key="drill_org")
st.caption(f"Sandbox: {p.settings.sandbox_url}")
c1, c2, c3 = st.columns(3)
error_rate = c1.slider("Error rate (503)", 0.0, 1.0, 0.0, 0.05, key="drill_error_rate")
timeout_rate = c2.slider("Timeout rate", 0.0, 1.0, 0.0, 0.05, key="drill_timeout_rate")
latency = c3.number_input("Median latency (ms)", 0.0, 600_000.0, 5.0, key="drill_latency")
fail_rate = c1.slider("Fail (callback failed) rate", 0.0, 1.0, 0.0, 0.05, key="drill_fail_rate")
changes = {
    "error_rate": error_rate,
    "timeout_rate": timeout_rate,
    "latency_ms": latency,
    "fail_rate": fail_rate,
}
b1, b2 = st.columns(2)
allowed = can(user.role, "drill.knobs")


def put(body: dict[str, float]) -> dict[str, float]:
    url, headers, payload = knob_request(p.settings.sandbox_url, org, body, sandbox_token())
    resp = httpx.put(url, headers=headers, json=payload, timeout=5.0)
    resp.raise_for_status()
    return dict(resp.json())


if b1.button("Apply knobs", key="drill_apply", disabled=not allowed):
    got = audited(user, "drill.knobs", org, {"changes": changes}, lambda: put(changes))
    if got is not None:
        st.success("Knobs applied")
        st.json(got)
if b2.button("Reset to healthy", key="drill_reset", disabled=not allowed):
    healthy = {"error_rate": 0.0, "timeout_rate": 0.0, "latency_ms": 5.0, "fail_rate": 0.0}
    if audited(user, "drill.reset", org, {"changes": healthy}, lambda: put(healthy)) is not None:
        st.success("Channel reset to healthy")


@st.fragment(run_every=5)
def effect() -> None:
    t = now()
    rows = [
        r for r in channel_health(p.observability.query, t, [org], window=60) if r["pay_org"] == org
    ]
    st.subheader("Effect (last minute)")
    st.dataframe(rows, hide_index=True, key="drill_health")
    series = link_series(
        p.observability.query, "channel_call", start=t - 900, end=t, points=60, pay_org=org
    )
    st.plotly_chart(link_chart(series, title=f"channel_call {org}"), key="drill_chart")


effect()


DETAILS = (("Checks", "checks"), ("Timeline", "steps"), ("Traffic", "traffic"),
           ("Refusals", "refusals"), ("Alerts", "alerts"), ("Breaker events", "breakers"),
           ("Guard outcomes", "guard"))  # fmt: skip
st.subheader("Drill reports")
reports = list_reports(p.db.engine)
if not reports:
    st.caption("No drill has run yet: `paywatch simulate --drill channel-failure` writes one.")
else:
    st.dataframe(reports, hide_index=True, key="drill_reports")
    labels = {r["id"]: f"#{r['id']} {r['name']} ({r['status']}, {r['started_at']:%Y-%m-%d %H:%M})"
              for r in reports}  # fmt: skip
    chosen = st.selectbox("Report", list(labels), format_func=labels.__getitem__,
                          key="drill_report")  # fmt: skip
    report = get_report(p.db.engine, int(chosen)) if chosen is not None else None
    if report is not None:
        st.markdown(f"**{report['drill']['name']}** on {report.get('target') or '-'}: "
                    f"{report['drill'].get('summary', '')}")  # fmt: skip
        if report.get("reason"):
            st.warning(f"Not applicable: {report['reason']}")
        tables = detail_tables(report)
        audit = report.get("audit") or {}
        plat = report.get("platform") or {}
        m = st.columns(5)
        m[0].metric("Status", report["status"])
        m[1].metric("Lost", audit.get("lost", 0) + plat.get("money_not_returned", 0))
        m[2].metric("Doubled", audit.get("doubled", 0))
        m[3].metric("Fallbacks / fail-fast", f"{plat.get('fallbacks_taken', 0)} / "
                    f"{plat.get('fail_fast', 0)}")  # fmt: skip
        m[4].metric("Trial balance", fmt((plat.get("trial_balance") or {}).get("ok"), ""))
        for title, key in DETAILS:
            if tables[key]:
                st.markdown(f"**{title}**")
                st.dataframe(tables[key], hide_index=True, key=f"drill_detail_{key}")
        with st.expander("Full report (JSON)"):
            st.json(report, expanded=False)
