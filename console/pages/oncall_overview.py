"""On-call overview: active alerts first, then core links, channel health, guard fallbacks,
the dependencies not healthy now (as the live dependency map colours them) and backlogs.

Every panel reads its own source inside :func:`console.panel.panel`, so a metrics outage
leaves the database-backed panels (alerts, backlogs) working and no traceback reaches the
browser; each panel says when it read its data. The panels refresh themselves
(``st.fragment(run_every=...)``). Operators and above can silence an alert here: the
silence is an ``alert_silences`` row (creator, comment and end required) that the
workers' alert dispatch honours.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from alerts.acks import AckStore
from alerts.errors import SilenceError
from alerts.history import alerts as stored_alerts
from alerts.inhibit import DEFAULT_INHIBIT_RULES, inhibited
from alerts.silences import SilenceStore, first_match
from console.audit import record
from console.auth import User, can, page_allowed
from console.pages import fmt, now, platform, require
from console.panel import panel
from console.plan_panels import plans_strip
from console.safe import md
from console.urlstate import url_select
from console.views.alert_ops import handling_badges, silence_choice, silence_rows
from console.views.depmap_live import attention, breakers_now, live_map
from console.views.overview import (
    HEALTH_COLOURS,
    active_alerts,
    alert_markdown,
    alert_table,
    backlogs,
    channel_health,
    clock_time,
    guard_fallbacks,
    link_rates,
    link_stats,
    runbook_section,
    sparkline,
)
from console.views.routing import PAGE as ROUTING_PAGE
from console.views.routing import ROUTING_WINDOW, routing_fallbacks
from stability.edge_stats import live_traffic

log = logging.getLogger("console.oncall")
WINDOWS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
SILENCE_FOR = {
    "30 min": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "4 hours": 14400,
    "8 hours": 28800,
    "24 hours": 86400,
}
SHOWN = 6  #: alert rows listed before "and N more" (the rest are in the labels table)
ALERTS_EVERY, METRICS_EVERY = 10, 5  #: seconds between refreshes


def _runbook(a: dict[str, Any]) -> None:
    section = runbook_section(a["runbook"], a["rule"])
    if section is None:
        st.caption("no runbook")
        return
    with st.popover("Runbook", key=f"runbook_{a['fingerprint']}"):
        st.markdown(f"#### {section.heading}")  # our own docs, not user text
        st.markdown(section.text)
        st.caption(f"docs/runbook.md#{section.anchor}")


@st.fragment(run_every=ALERTS_EVERY)
def alerts_panel() -> None:
    with panel("Active alerts", "database"):
        engine = platform().db.engine
        t = now()
        alerts = active_alerts(engine)
        silences = SilenceStore(engine).active(t)
        found = stored_alerts(engine)
        held, acked = inhibited(found, DEFAULT_INHIBIT_RULES), AckStore(engine).covering(found)
        if not alerts:
            st.success("No active alerts.")
        for a in alerts[:SHOWN]:
            row, book = st.columns([6, 1.2], vertical_alignment="center")
            line = alert_markdown(a, t, first_match(silences, a["labels"]))
            row.markdown(line + handling_badges(a["fingerprint"], held, acked))
            with book:
                _runbook(a)
        if len(alerts) > SHOWN:
            st.caption(f"and {len(alerts) - SHOWN} more (all {len(alerts)} in the table below)")
        if alerts:
            with st.expander(f"Labels of the {len(alerts)} active alerts"):
                st.dataframe(alert_table(alerts, t), hide_index=True, key="alerts")


def _audit(user: User, action: str, target: str, detail: dict[str, Any], ok: bool) -> None:
    record(
        platform().db.engine,
        actor=user.username,
        role=user.role,
        action=action,
        target=target,
        detail={**detail, "ok": ok},
    )


def _silence(user: User) -> tuple[str, str]:
    """Silence the chosen alert with the submitted form's values; (level, message)."""
    state = st.session_state
    fingerprint, comment = state.get("silence_alert"), str(state.get("silence_comment") or "")
    if not fingerprint:
        return "error", "Choose the alert to silence."
    if not comment.strip():
        return "error", "A silence needs a comment saying why."
    engine, t = platform().db.engine, now()
    alert = next((a for a in active_alerts(engine) if a["fingerprint"] == fingerprint), None)
    if alert is None:
        return "warning", "That alert is no longer active."
    ends = t + SILENCE_FOR.get(str(state.get("silence_for")), 3600)
    detail = {"matchers": alert["labels"], "ends_at": ends, "comment": comment}
    try:
        made = SilenceStore(engine).create(
            alert["labels"], user.username, comment, ends_at=ends, now=t
        )
    except SilenceError as exc:
        _audit(user, "alert.silence", alert["rule"], {**detail, "error": str(exc)}, False)
        return "error", f"Not silenced: {exc}"
    _audit(user, "alert.silence", alert["rule"], {**detail, "silence_id": made.id}, True)
    state["silence_comment"] = ""  # the widgets are not drawn yet in this run
    state["silence_alert"] = None
    return "success", (
        f"Silenced “{alert['summary'] or alert['rule']}” until {clock_time(made.ends_at, t)}."
    )


def _end_silence(user: User) -> tuple[str, str]:
    sid = st.session_state.get("silence_end")
    if sid is None:
        return "error", "Choose the silence to end."
    try:
        SilenceStore(platform().db.engine).expire(int(sid))
    except SilenceError as exc:
        _audit(user, "alert.unsilence", f"silence {sid}", {"error": str(exc)}, False)
        return "error", f"Not ended: {exc}"
    _audit(user, "alert.unsilence", f"silence {sid}", {"silence_id": int(sid)}, True)
    return "success", f"Silence {sid} ended."


def silence_actions(user: User) -> tuple[str, str] | None:
    """Carry out a submitted silence form or "End silence" click, before the panels are
    drawn (so the alerts panel of this very run shows the change). Role checked here."""
    state = st.session_state
    wants = (
        "silence"
        if state.get("silence_submit")
        else "end"
        if state.get("silence_end_click")
        else None
    )
    if wants is None:
        return None
    if not can(user.role, "alert.silence"):
        return "error", "Your role may not silence alerts."
    try:
        return _silence(user) if wants == "silence" else _end_silence(user)
    except Exception:  # noqa: BLE001 - the database failing: say so, never a traceback
        log.warning("silence action failed", exc_info=True)
        return "error", "The database did not answer; check the silences below before trying again."


def silence_form(user: User, result: tuple[str, str] | None) -> None:
    """Silence an active alert for a chosen time (operators and above), or end a silence."""
    with st.expander("Silence an alert", expanded=result is not None):
        if result:
            getattr(st, result[0])(md(result[1]))
        read: dict[str, Any] = {}
        with panel(None, "database"):
            engine, t = platform().db.engine, now()
            read["alerts"] = {a["fingerprint"]: a for a in active_alerts(engine)}
            read["silences"] = SilenceStore(engine).active(t)
        if not read:
            return
        alerts, silences = read["alerts"], read["silences"]
        with st.form("silence"):
            st.selectbox(
                "Alert",
                list(alerts),
                index=None,
                key="silence_alert",
                placeholder="Choose an active alert",
                format_func=lambda fp: " · ".join(
                    filter(
                        None,
                        (
                            alerts[fp]["summary"] or alerts[fp]["rule"],
                            alerts[fp]["resource"],
                            alerts[fp]["state"],
                        ),
                    )
                ),
            )
            st.selectbox("For", list(SILENCE_FOR), index=1, key="silence_for")
            st.text_input("Comment (why)", max_chars=500, key="silence_comment")
            st.caption(
                f"Creator: {md(user.username)}. Notifications for this alert stop "
                "until the silence ends; the alert stays on this page."
            )
            st.form_submit_button("Silence", key="silence_submit")
        if silences:
            st.dataframe(silence_rows(silences, t), hide_index=True, key="silences")
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            by_id = {s.id: s for s in silences}
            c1.selectbox(
                "Silence",
                list(by_id),
                key="silence_end",
                format_func=lambda i: silence_choice(by_id[i], t),
            )
            c2.button("End silence", key="silence_end_click")


def _core_links(window: float) -> None:
    with panel("Core links", "metrics"):
        p, t = platform(), now()
        links = link_stats(p.observability.query, t, window=window)
        # 10 minutes: a freshly started platform shows its lines within a minute or two
        rates = link_rates(p.observability.query, start=t - 600, end=t, points=30)
        widths = [2, 1, 1, 1, 3]
        heads = ("link", "req/s", "success", "p99", "req/s, last 10 min")
        for col, head in zip(st.columns(widths), heads, strict=True):
            col.caption(head)
        for row in links:
            cols = st.columns(widths, vertical_alignment="center")
            colour = HEALTH_COLOURS[row["health"]]
            cols[0].markdown(  # step names and colours are ours
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


def _channels(window: float) -> None:
    with panel("Channel health", "metrics"):
        p = platform()
        rows = channel_health(p.observability.query, now(), p.settings.pay_orgs, window=window)
        st.dataframe(
            rows,
            hide_index=True,
            key="channels",
            column_config={
                "rate": st.column_config.NumberColumn("req/s", format="%.2f"),
                "success": st.column_config.NumberColumn("success", format="percent"),
                "p99_s": st.column_config.NumberColumn("p99 (s)", format="%.3f"),
            },
        )


def _guard(window: float) -> None:
    with panel("Guard fallbacks", "metrics"):
        rows = guard_fallbacks(platform().observability.query, now(), window=window)
        if rows:
            st.dataframe(rows, hide_index=True, key="guard")
        else:
            st.caption("No degraded or fallback calls in the window.")


def _backlogs() -> None:
    with panel("Backlogs", "database"):
        b = backlogs(platform().db.engine)
        c = st.columns(3)
        c[0].metric("Compensation pending", b["compensation"]["pending"])
        c[1].metric("Notifications pending", b["notifications_pending"])
        c[2].metric("Pending postings", b["pending_postings"])
        st.dataframe(
            [{"status": k, "tasks": v} for k, v in b["compensation"].items()],
            hide_index=True,
            key="comp_backlog",
        )


def _routing(user: User) -> None:
    with panel("Routing", "metrics"):
        rows = routing_fallbacks(platform().observability.query, now(), window=ROUTING_WINDOW)
        if rows:
            st.dataframe(rows, hide_index=True, key="routing")
        else:
            st.caption("No routing fallback in the last 5 minutes.")
        if page_allowed(user.role, ROUTING_PAGE):
            st.markdown(f"Rules, preview and history: [Routing page]({ROUTING_PAGE})")


def _dependencies(window: float) -> None:
    with panel("Dependencies", "metrics"):
        p = platform()
        rt = p.stability
        dmap = rt.map_store.load()
        live = live_traffic(p.observability.query, now(), window=window)
        breakers = breakers_now(rt, p.db.engine)
        nodes, _ = live_map(dmap, rt.switches.snapshot(), breakers, live)
        rows = attention(nodes)
        if rows:
            st.dataframe(rows, hide_index=True, key="dependencies")
        else:
            st.caption("Every called dependency healthy; no breaker open, nothing degraded.")
        st.caption("Red > 20 % errors or breaker open, yellow > 0.1 %: see Dependency map.")


@st.fragment(run_every=METRICS_EVERY)
def metrics_panels(window: float, user: User) -> None:
    _core_links(window)
    left, right = st.columns(2)
    with left:
        _channels(window)
        _guard(window)
        _routing(user)
    with right:
        _dependencies(window)
        _backlogs()


user = require("oncall")
head, pick = st.columns([3, 2], vertical_alignment="bottom")
head.title("Overview")
with pick:
    label = url_select(
        "Window",
        list(WINDOWS),
        key="window",
        default="5m",
        widget=st.radio,
        horizontal=True,
        format_func=lambda w: f"last {w}",
    )
result = silence_actions(user)
plans_strip(platform().db.engine)  # switch plans in force, above the alerts
alerts_panel()
if can(user.role, "alert.silence"):
    silence_form(user, result)
metrics_panels(float(WINDOWS[label]), user)
