"""On-call → Alerts: every pending and firing alert with what holds its notifications back
(a silence, an inhibition, an acknowledgement), and the operations on them.

Operators and above silence alerts (matchers, comment and an end are required; the
creator is the signed-in user), end silences, acknowledge firing alerts (they stay
firing, humans are not paged again) and withdraw an acknowledgement (a comment saying
why is required; the alert is repeated again when its repeat is due). Every action is
role-checked at the click and written to the console's audit log with its outcome.
Below: the silences, the acknowledgements (in force, ended or withdrawn), the alerts'
history (transitions, acknowledgements made and withdrawn), the notification log (what
was sent where, when, with what result, and what was left out) and the inhibition rules
in force.
``?alert=<fingerprint>`` (Alertmanager's ``generatorURL``) narrows the history and the
notification log to that alert.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from alerts.acks import AckStore
from alerts.errors import AlertsError
from alerts.external import firing_alerts
from alerts.history import ack_events, notification_log, transitions
from alerts.history import alerts as stored_alerts
from alerts.inhibit import DEFAULT_INHIBIT_RULES, inhibited
from alerts.silences import SilenceStore, first_match, parse_duration, parse_silence_matchers
from console.audit import record
from console.auth import User, can
from console.pages import now, platform, require
from console.panel import panel
from console.safe import md
from console.views.alert_ops import (
    STATUS_TEXT,
    ack_rows,
    external_rows,
    handling_badges,
    history_rows,
    inhibit_rows,
    notification_rows,
    silence_choice,
    silence_rows,
)
from console.views.alerts import active_alerts, alert_markdown, clock_time

log = logging.getLogger("console.alerts")


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
    state, engine, t = st.session_state, platform().db.engine, now()
    text = str(state.get("al_sil_matchers") or "")
    comment = str(state.get("al_sil_comment") or "")
    duration = str(state.get("al_sil_for") or "").strip()
    detail: dict[str, Any] = {"matchers": text, "comment": comment, "for": duration}
    try:
        eq, extra = parse_silence_matchers(line for line in text.splitlines() if line.strip())
        if not duration:
            raise AlertsError("a silence needs an end: say for how long (e.g. 30m, 2h, 1d)")
        ends = t + parse_duration(duration)
        made = SilenceStore(engine).create(eq, user.username, comment, ends, now=t, extra=extra)
    except AlertsError as exc:
        _audit(user, "alert.silence", "console", {**detail, "error": str(exc)}, False)
        return "error", f"Not silenced: {exc}"
    target = made.matchers.get("alertname", "silence")
    _audit(user, "alert.silence", target, {**detail, "silence_id": made.id}, True)
    for key in ("al_sil_matchers", "al_sil_comment", "al_sil_for"):
        state[key] = ""  # the widgets are not drawn yet in this run
    return "success", f"Silence #{made.id} made, until {clock_time(made.ends_at, t)}."


def _expire(user: User) -> tuple[str, str]:
    sid = st.session_state.get("al_sil_expire")
    if sid is None:
        return "error", "Choose the silence to end."
    try:
        SilenceStore(platform().db.engine).expire(int(sid))
    except AlertsError as exc:
        _audit(user, "alert.unsilence", f"silence {sid}", {"error": str(exc)}, False)
        return "error", f"Not ended: {exc}"
    _audit(user, "alert.unsilence", f"silence {sid}", {"silence_id": int(sid)}, True)
    return "success", f"Silence #{sid} ended."


def _ack(user: User) -> tuple[str, str]:
    state = st.session_state
    fp, comment = state.get("al_ack_alert"), str(state.get("al_ack_comment") or "")
    if not fp:
        return "error", "Choose the alert to acknowledge."
    detail = {"fingerprint": fp, "comment": comment}
    try:
        made = AckStore(platform().db.engine).ack(str(fp), user.username, comment)
    except AlertsError as exc:
        _audit(user, "alert.ack", str(fp)[:16], {**detail, "error": str(exc)}, False)
        return "error", f"Not acknowledged: {exc}"
    _audit(user, "alert.ack", made.rule, {**detail, "ack_id": made.id}, True)
    state["al_ack_comment"] = ""
    state["al_ack_alert"] = None
    return "success", f"Acknowledged {made.rule}: no more repeat pages while it fires."


def _unack(user: User) -> tuple[str, str]:
    state = st.session_state
    fp, comment = state.get("al_unack_alert"), str(state.get("al_unack_comment") or "")
    if not fp:
        return "error", "Choose the alert whose acknowledgement to withdraw."
    detail: dict[str, Any] = {"fingerprint": fp, "comment": comment}
    try:
        gone = AckStore(platform().db.engine).withdraw(str(fp), user.username, comment)
    except AlertsError as exc:
        _audit(user, "alert.unack", str(fp)[:16], {**detail, "error": str(exc)}, False)
        return "error", f"Not withdrawn: {exc}"
    rule = gone[0].rule
    _audit(user, "alert.unack", rule, {**detail, "ack_ids": [a.id for a in gone]}, True)
    state["al_unack_comment"] = ""
    state["al_unack_alert"] = None
    return "success", f"Acknowledgement of {rule} withdrawn: it pages again when its repeat is due."


ACTIONS = {
    "al_sil_submit": ("alert.silence", _silence),
    "al_sil_expire_click": ("alert.silence", _expire),
    "al_ack_submit": ("alert.ack", _ack),
    "al_unack_submit": ("alert.ack", _unack),
}


def actions(user: User) -> tuple[str, str] | None:
    """Carry out the clicked action before anything is drawn; role checked at the click."""
    clicked = next((k for k in ACTIONS if st.session_state.get(k)), None)
    if clicked is None:
        return None
    need, fn = ACTIONS[clicked]
    if not can(user.role, need):
        return "error", "Your role may not do this: nothing was changed."
    try:
        return fn(user)
    except Exception:  # noqa: BLE001 - the database failing: say so, never a traceback
        log.warning("alert action failed", exc_info=True)
        return "error", "The database did not answer; check below before trying again."


def _prefill() -> None:
    """Put the chosen alert's labels into the silence form's matchers."""
    labels = st.session_state.get("al_sil_labels", {}).get(st.session_state.get("al_sil_from"))
    if labels:
        st.session_state["al_sil_matchers"] = "\n".join(f"{k}={v}" for k, v in labels.items())


def alert_list() -> dict[str, dict[str, Any]]:
    """The active alerts with their silence / inhibition / acknowledgement badges."""
    read: dict[str, Any] = {}
    with panel("Active alerts", "database"):
        engine, t = platform().db.engine, now()
        rows = active_alerts(engine)
        found = stored_alerts(engine)
        silences = SilenceStore(engine).active(t)
        held = inhibited(found, DEFAULT_INHIBIT_RULES)
        acked = AckStore(engine).covering(found)
        if not rows:
            st.success("No active alerts.")
        for a in rows:
            a["ack"] = acked.get(a["fingerprint"])
            line = alert_markdown(a, t, first_match(silences, a["labels"]))
            st.markdown(line + handling_badges(a["fingerprint"], held, acked))
            st.caption(f"fingerprint {a['fingerprint'][:12]}")
        read = {a["fingerprint"]: a for a in rows}
    return read


def external_list() -> None:
    """With ``PAYWATCH_ALERT_EVALUATION=prometheus`` the engine stands down: the alerts
    Prometheus evaluated, read from Alertmanager (else Prometheus)."""
    s = platform().settings
    if s.alert_evaluation != "prometheus":
        return
    with panel("Alerts evaluated by Prometheus", "alertmanager"):
        rows = external_rows(firing_alerts(s.alertmanager_url, s.prometheus_url), now())
        if rows:
            st.dataframe(rows, hide_index=True, key="al_external")
        else:
            st.success("No alerts firing in Prometheus.")


def silence_form(user: User, active: dict[str, dict[str, Any]]) -> None:
    st.session_state["al_sil_labels"] = {fp: a["labels"] for fp, a in active.items()}
    st.selectbox(
        "Start from an alert's labels",
        list(active),
        index=None,
        key="al_sil_from",
        on_change=_prefill,
        placeholder="Choose an active alert (or write the matchers)",
        format_func=lambda fp: f"{active[fp]['rule']} · {active[fp]['resource']}",
    )
    with st.form("al_silence"):
        st.text_area(
            "Matchers (one per line: name=value, name!=value, name=~regex, name!~regex)",
            key="al_sil_matchers",
        )
        st.text_input("For (e.g. 30m, 2h, 1d)", key="al_sil_for")
        st.text_input("Comment (why)", max_chars=500, key="al_sil_comment")
        st.caption(f"Creator: {md(user.username)}. Matching alerts stay listed, unnotified.")
        st.form_submit_button("Silence", key="al_sil_submit")


def ack_form(active: dict[str, dict[str, Any]]) -> None:
    firing = [fp for fp, a in active.items() if a["state"] == "firing"]
    with st.form("al_ack"):
        st.selectbox(
            "Firing alert",
            firing,
            index=None,
            key="al_ack_alert",
            placeholder="Choose a firing alert",
            format_func=lambda fp: f"{active[fp]['rule']} · {active[fp]['resource']}",
        )
        st.text_input("Comment", max_chars=500, key="al_ack_comment")
        st.form_submit_button("Acknowledge", key="al_ack_submit")


def unack_form(active: dict[str, dict[str, Any]]) -> None:
    acked = [fp for fp, a in active.items() if a.get("ack") is not None]
    if not acked:
        st.caption("No acknowledgement in force to withdraw.")
        return
    with st.form("al_unack"):
        st.selectbox(
            "Acknowledged alert",
            acked,
            index=None,
            key="al_unack_alert",
            placeholder="Choose an acknowledged alert",
            format_func=lambda fp: (
                f"{active[fp]['rule']} · {active[fp]['resource']} · "
                f"acked by {active[fp]['ack'].creator}"
            ),
        )
        st.text_input("Why withdraw (e.g. wrong alert, handing over)", key="al_unack_comment")
        st.form_submit_button("Withdraw acknowledgement", key="al_unack_submit")


def silences_panel(may_act: bool) -> None:
    with panel("Silences", "database"):
        engine, t = platform().db.engine, now()
        shown = SilenceStore(engine).all(50)
        if not shown:
            st.caption("No silence yet.")
            return
        st.dataframe(silence_rows(shown, t), hide_index=True, key="al_silences")
        live = {s.id: s for s in shown if s.ends_at > t}
        if may_act and live:
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            c1.selectbox(
                "Silence",
                list(live),
                key="al_sil_expire",
                format_func=lambda i: silence_choice(live[i], t),
            )
            c2.button("End silence", key="al_sil_expire_click")


def _table(rows: list[dict[str, Any]], key: str) -> None:
    if rows:
        st.dataframe(rows, hide_index=True, key=key)
    else:
        st.caption("None yet.")


def logs_panels(focus: str | None) -> None:
    """Acknowledgements, history and notification log (of the ``focus`` alert if given)."""
    if focus:
        st.info(f"Showing alert {md(focus[:12])} only. [All alerts](oncall_alerts)")
    with panel("Acknowledgements", "database"):
        engine = platform().db.engine
        acks = AckStore(engine).recent(50, focus)
        states = {a.fingerprint: a for a in stored_alerts(engine, ("firing", "resolved"))}
        _table(ack_rows(acks, now(), states), "al_acks")
    with panel("Alert history", "database"):
        engine = platform().db.engine
        moves, acked = transitions(engine, 100, focus), ack_events(engine, 100, focus)
        _table(history_rows(moves, now(), acked, limit=100), "al_history")
    with panel("Notification log", "database"):
        engine, t = platform().db.engine, now()
        names = {a.fingerprint: a.rule for a in stored_alerts(engine, ("firing", "resolved"))}
        rows = notification_rows(notification_log(engine, 100, focus), t, names)
        if rows:
            st.dataframe(rows, hide_index=True, key="al_notifications")
        else:
            st.caption("Nothing notified yet.")
        st.caption(" · ".join(f"{k}: {v}" for k, v in STATUS_TEXT.items()))
    with st.expander("Inhibition rules"):
        st.dataframe(inhibit_rows(DEFAULT_INHIBIT_RULES), hide_index=True, key="al_inhibit")


user = require("oncall")
st.title("Alerts")
result = actions(user)
if result:
    getattr(st, result[0])(md(result[1]))
external_list()
active = alert_list()
may_silence, may_ack = can(user.role, "alert.silence"), can(user.role, "alert.ack")
if may_silence or may_ack:
    left, right = st.columns(2)
    if may_silence:
        with left, st.container(border=True):
            st.subheader("Silence")
            silence_form(user, active)
    if may_ack:
        with right, st.container(border=True):
            st.subheader("Acknowledge")
            ack_form(active)
            unack_form(active)
silences_panel(may_silence)
focus = st.query_params.get("alert")
logs_panels(focus if isinstance(focus, str) and 8 <= len(focus) <= 64 else None)
