"""Drills: set the sandbox channel's fault knobs and watch the effect on the channel;
the reports of scripted drills (``paywatch simulate --drill``) and grade audits
(``paywatch drill grade-audit``: every edge's verdict): list and details.

The knob controls start at what the sandbox runs now (``GET /admin/knobs``), and follow
it when it changes (another operator, a scripted drill); an unsaved edit is kept while
the sandbox stays as it was. With the sandbox unreachable the knobs panel says so and
offers no controls. Each panel fails alone (:func:`console.panel.panel`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backends.http import JsonHttp
from console.auth import can
from console.pages import now, platform, require, sandbox_token
from console.panel import panel
from console.reports.context import PageContext, run_audited
from console.reports.ops import big_ints_as_text, flash, ids_as_text, take_flash
from console.safe import md
from console.urlstate import url_select
from console.views.overview import channel_health, link_chart, link_series
from console.views.switches import knob_request
from simulator.grade_audit_report import edge_rows, fault_rows, is_grade_audit
from simulator.report import detail_tables, get_report, list_reports
from simulator.sandbox_config import Knobs

PAGE = "drills"
#: (knob, label, control) of the knobs set here; rates are sliders over [0, 1]
CONTROLS = (
    ("error_rate", "Error rate (503)", "rate"),
    ("timeout_rate", "Timeout rate", "rate"),
    ("latency_ms", "Median latency (ms)", "ms"),
    ("fail_rate", "Fail (callback failed) rate", "rate"),
)
DETAILS = (
    ("Checks", "checks"),
    ("Timeline", "steps"),
    ("Traffic", "traffic"),
    ("Refusals", "refusals"),
    ("Alerts", "alerts"),
    ("Breaker events", "breakers"),
    ("Guard outcomes", "guard"),
)


def read_knobs(sandbox_url: str, org: str, token: str) -> dict[str, Any]:
    """The knobs the sandbox runs for ``org`` now; raises when it cannot say."""
    with JsonHttp(sandbox_url, timeout=3.0, maxsize=1) as http:
        resp = http.get("/admin/knobs", headers={"X-Sandbox-Admin": token})
    knobs = resp.raise_for_status().json().get(org)
    if not isinstance(knobs, dict):
        raise LookupError(f"the sandbox does not serve {org}")
    return knobs


def put_knobs(sandbox_url: str, org: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    url, headers, payload = knob_request(sandbox_url, org, body, token)
    with JsonHttp(timeout=5.0, maxsize=1) as http:
        resp = http.put(url, headers=headers, json=payload)
    return dict(resp.raise_for_status().json())


def _follow(org: str, current: dict[str, Any]) -> None:
    """Start the controls at the sandbox's values: on first show, on another org, when
    the sandbox changed since the last look, or when Streamlit dropped a control's state
    (the page was left). Set before the widgets exist."""
    seen = (org, {k: current.get(k) for k, _, _ in CONTROLS})
    missing = any(f"drill_{k}" not in st.session_state for k, _, _ in CONTROLS)
    if missing or st.session_state.get("drill_seen") != seen:
        for k, _, _ in CONTROLS:
            st.session_state[f"drill_{k}"] = float(current[k])
        st.session_state["drill_seen"] = seen


def knobs_panel(c: PageContext, sandbox_url: str, org: str, allowed: bool) -> None:
    """The knob controls at the sandbox's values; apply and reset, audited."""
    token = sandbox_token()
    current = read_knobs(sandbox_url, org, token)
    _follow(org, current)
    cols = st.columns(3)
    changes: dict[str, float] = {}
    for i, (k, label, control) in enumerate(CONTROLS):
        col = cols[i % 3]
        if control == "rate":
            changes[k] = col.slider(label, 0.0, 1.0, step=0.01, key=f"drill_{k}")
        else:
            changes[k] = col.number_input(label, 0.0, 600_000.0, step=1.0, key=f"drill_{k}")
    with st.expander(f"Every knob {org} runs now"):
        st.dataframe(
            [{"knob": k, "value": str(v)} for k, v in current.items()],
            hide_index=True,
            key="drill_current",
        )
    b1, b2 = st.columns(2)
    if b1.button("Apply knobs", key="drill_apply", disabled=not allowed) and allowed:
        ok, res = run_audited(
            c,
            "drill.knobs",
            org,
            {"changes": changes},
            lambda: put_knobs(sandbox_url, org, token, changes),
        )
        _done(
            ok,
            res,
            f"Knobs applied to {org}: " + ", ".join(f"{k} {v:g}" for k, v in changes.items()),
        )
    if b2.button("Reset to healthy", key="drill_reset", disabled=not allowed) and allowed:
        healthy = Knobs().as_dict()
        ok, res = run_audited(
            c,
            "drill.reset",
            org,
            {"changes": healthy},
            lambda: put_knobs(sandbox_url, org, token, healthy),
        )
        _done(ok, res, f"{org} reset to a healthy channel.")


def _done(ok: bool, res: Any, message: str) -> None:
    if not ok:
        st.error(md(f"Not applied: {res}"))
        return
    flash(st.session_state, PAGE, message)
    st.rerun()


def effect_panel(query: Any, org: str) -> None:
    t = now()
    rows = [r for r in channel_health(query, t, [org], window=60) if r["pay_org"] == org]
    st.dataframe(rows, hide_index=True, key="drill_health")
    series = link_series(query, "channel_call", start=t - 900, end=t, points=60, pay_org=org)
    st.plotly_chart(link_chart(series, title=f"channel_call {org}"), key="drill_chart")


def reports_panel(engine: Any) -> None:
    reports = list_reports(engine)
    if not reports:
        st.caption("No drill has run yet: `paywatch simulate --drill channel-failure` writes one.")
        return
    st.dataframe(ids_as_text(reports), hide_index=True, key="drill_reports")
    labels = {
        r["id"]: f"#{r['id']} {r['name']} ({r['status']}, {r['started_at']:%Y-%m-%d %H:%M})"
        for r in reports
    }
    chosen = st.selectbox(
        "Report", list(labels), format_func=labels.__getitem__, key="drill_report"
    )
    report = get_report(engine, int(chosen)) if chosen is not None else None
    if report is not None:
        report_detail(report)


def report_detail(report: dict[str, Any]) -> None:
    drill = report.get("drill") or {}
    st.markdown(
        f"**{md(drill.get('name'))}** on {md(report.get('target') or '-')}: "
        f"{md(drill.get('summary', ''))}"
    )
    if report.get("reason"):
        st.warning(f"Not applicable: {md(report['reason'])}")
    tables = detail_tables(report)
    audit = report.get("audit") or {}
    plat = report.get("platform") or {}
    m = st.columns(5)
    m[0].metric("Status", md(report.get("status")))
    m[1].metric("Lost", audit.get("lost", 0) + plat.get("money_not_returned", 0))
    m[2].metric("Doubled", audit.get("doubled", 0))
    m[3].metric(
        "Fallbacks / fail-fast", f"{plat.get('fallbacks_taken', 0)} / {plat.get('fail_fast', 0)}"
    )
    ok = (plat.get("trial_balance") or {}).get("ok")
    m[4].metric("Trial balance", "–" if ok is None else str(ok))
    if is_grade_audit(report):
        grade_audit_detail(report)
    for title, key in DETAILS:
        if tables[key]:
            st.markdown(f"**{title}**")
            st.dataframe(ids_as_text(tables[key]), hide_index=True, key=f"drill_detail_{key}")
    with st.expander("Full report (JSON)"):
        st.json(big_ints_as_text(report), expanded=False)


def grade_audit_detail(report: dict[str, Any]) -> None:
    """A grade audit's verdict per edge and each fault's effect on the links."""
    verdicts = (report.get("grade_audit") or {}).get("verdicts") or {}
    cols = st.columns(len(verdicts) or 1)
    for col, (name, n) in zip(cols, verdicts.items(), strict=False):
        col.metric(name.replace("_", " ").capitalize(), n)
    if verdicts.get("contradicted"):
        st.error(
            f"{verdicts['contradicted']} declared grade(s) contradicted: the alert "
            "grade_contradicted fires for each."
        )
    st.markdown("**Grades: declared, observed, the impact query's prediction, verdict**")
    st.dataframe(edge_rows(report), hide_index=True, key="drill_grade_edges")
    st.markdown("**Faults and their effect on the links (observed / impact query)**")
    st.dataframe(fault_rows(report), hide_index=True, key="drill_grade_faults")


def main() -> None:
    user = require("sre")
    st.title("Drills")
    p = platform()
    c = PageContext(p, user.username, user.role)
    done = take_flash(st.session_state, PAGE)
    if done:
        st.success(md(done))
    org = url_select("Pay org", list(p.settings.pay_orgs), key="org")
    st.caption(f"Sandbox: {md(p.settings.sandbox_url)}")
    allowed = can(user.role, "drill.knobs")
    with panel("Channel knobs", "sandbox"):
        knobs_panel(c, p.settings.sandbox_url, org, allowed)

    @st.fragment(run_every=5)
    def effect() -> None:
        with panel("Effect (last minute)", "metrics"):
            effect_panel(p.observability.query, org)

    effect()
    with panel("Drill reports", "database"):
        reports_panel(p.db.engine)


main()
