"""Operations: reconciliation runs and differences, resolving a difference with a note,
and reconciling an uploaded channel statement (CSV) for a pay org and day.

Page convention: see :mod:`console.pages.ops_compensation`. Filters (status, class, pay
org, day) live in the URL; the day is a date picker (default yesterday, UTC). The
statement's pay org is one of the configured pay orgs, checked again by the function
that runs the reconciliation; a day that is not over yet needs an explicit confirmation.
After an action the page reruns, showing the run or difference it changed.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import streamlit as st

from console.panel import panel
from console.reports.context import page_context, run_audited, table
from console.reports.ops import (
    configured_pay_orgs,
    difference_kinds,
    flash,
    ids_as_text,
    parse_statement_csv,
    recon_differences,
    recon_runs,
    reconcile_statement,
    resolve_difference,
    take_flash,
)
from console.safe import md
from console.urlstate import url_date, url_select
from paycore.recon import CLASSES, day_over

log = logging.getLogger(__name__)
ALL = "(all)"
PAGE = "reconciliation"
DAYS = ("one day", "all days")
#: the URL keys of the filters and the widget keys url_select/url_date give them
FILTERS = {"org": "url_org", "day": "url_day", "days": "url_days"}


def _pick(value: str) -> str | None:
    return None if value in (ALL, "") else value


def _kinds(c: Any) -> list[str]:
    try:
        return difference_kinds(c.db)
    except Exception:  # noqa: BLE001 - the tables' panels say the database is down
        log.warning("difference classes unavailable", exc_info=True)
        return list(CLASSES)


def _orgs_on_record(c: Any) -> list[str]:
    try:
        return [r.pay_org_no for r in recon_runs(c.db, limit=500)]
    except Exception:  # noqa: BLE001 - the tables' panels say the database is down
        return []


def _show_after_action() -> None:
    """After a reconciliation: point the filters at its pay org and day (widget values
    set before the widgets exist; they write them to the URL)."""
    show = st.session_state.pop("rc_show", None)
    if not show:
        return
    values = {"org": show["org"], "day": date.fromisoformat(show["day"]), "days": DAYS[0]}
    for key, value in values.items():
        st.session_state[FILTERS[key]] = value


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Reconciliation")
    done = take_flash(st.session_state, PAGE)
    if done:
        st.success(md(done))
    if st.session_state.pop("rc_note_clear", False):
        st.session_state["rc_note"] = ""
    _show_after_action()
    may_act = c.can("ops")
    configured = list(configured_pay_orgs(c.platform))
    yesterday = c.now().date() - timedelta(days=1)
    f1, f2, f3, f4, f5 = st.columns([2, 3, 2, 2, 2])
    status = url_select(
        "Difference status", [ALL, "open", "resolved"], key="status", widget=f1.selectbox
    )
    kind = url_select("Class", [ALL, *_kinds(c)], key="class", widget=f2.selectbox)
    orgs = sorted(set(configured) | set(_orgs_on_record(c)))
    org = url_select("Pay org", [ALL, *orgs], key="org", widget=f3.selectbox)
    days = url_select("Days", list(DAYS), key="days", widget=f4.selectbox)
    with f5:
        picked = url_date("Day (UTC)", key="day", default=yesterday, disabled=days != DAYS[0])
    day = picked.isoformat() if days == DAYS[0] else None
    with panel("Runs", "database"):
        runs = recon_runs(c.db, pay_org_no=_pick(org), day=day)
        st.dataframe(ids_as_text(table(runs)), hide_index=True)
    diffs: list[Any] = []
    with panel("Differences", "database"):
        diffs = recon_differences(
            c.db, status=_pick(status), kind=_pick(kind), pay_org_no=_pick(org), day=day
        )
        st.dataframe(ids_as_text(table(diffs)), hide_index=True)
        if day is not None:
            _elsewhere(c, _pick(org), day)
    if not may_act:
        st.info("Read-only: operators and above can resolve differences and reconcile.")
        return
    _resolve(c, [d for d in diffs if d.status == "open"])
    _upload(c, configured, yesterday)


def _elsewhere(c: Any, org: str | None, day: str) -> None:
    """Say when open differences wait on other days than the one shown."""
    other = [d for d in recon_differences(c.db, status="open", pay_org_no=org) if d.day != day]
    if other:
        days = sorted({d.day for d in other}, reverse=True)
        shown = ", ".join(days[:5]) + (" …" if len(days) > 5 else "")
        st.caption(
            f"{len(other)} open difference(s) on other days ({shown}): choose "
            "\u201call days\u201d to see them."
        )


def _resolve(c: Any, open_diffs: list[Any]) -> None:
    st.subheader("Resolve a difference")
    if not open_diffs:
        st.caption("No open difference in this view.")
        return
    labels = {d.id: f"{d.id} · {d.kind} · {d.pay_org_no} {d.day} · {d.ref}" for d in open_diffs}
    did = st.selectbox("Difference", list(labels), format_func=labels.__getitem__, key="rc_diff")
    note = st.text_input("Note (required)", key="rc_note")
    if not (st.button("Resolve", key="rc_resolve", type="primary") and c.can("ops")):
        return
    if not note.strip():
        st.error("A note is required to resolve a difference.")
        return
    ok, res = run_audited(
        c,
        "recon.resolve_difference",
        f"difference:{did}",
        {"note": note},
        lambda: resolve_difference(c.db, did, c.user, note, c.now()),
    )
    if ok and res:
        flash(st.session_state, PAGE, f"Difference {did} resolved.")
        st.session_state["rc_note_clear"] = True
        st.rerun()
    st.error(md(f"Not resolved: {res if not ok else 'no longer open'}"))


def _upload(c: Any, orgs: list[str], yesterday: date) -> None:
    st.subheader("Reconcile a statement file")
    st.caption("CSV header: channel_txn_no,channel_ref,kind,amount,currency,status,settled_at")
    u1, u2 = st.columns(2)
    org = u1.selectbox("Statement pay org", orgs, key="rc_up_org")
    day = u2.date_input(
        "Statement day (UTC)",
        value=yesterday,
        max_value=yesterday + timedelta(days=1),
        key="rc_up_day",
    )
    assert isinstance(day, date)
    unfinished = not day_over(day, c.now())
    confirmed = False
    if unfinished:
        st.warning(
            f"{day.isoformat()} is not over yet (UTC): the channel's statement may "
            "still grow, and what it lacks now is recorded as differences."
        )
        confirmed = st.checkbox("Reconcile the unfinished day anyway", key="rc_unfinished")
    upload = st.file_uploader("Statement CSV", type=["csv"], key="rc_file")
    blocked = upload is None or (unfinished and not confirmed)
    if not (st.button("Reconcile", key="rc_run", disabled=blocked) and c.can("ops")):
        return
    assert upload is not None and org is not None
    try:
        lines = parse_statement_csv(upload.getvalue())
    except ValueError as exc:
        st.error(md(exc))
        return
    bar = st.progress(0.0, text=f"0 / {len(lines)} lines")
    step = max(1, len(lines) // 100)

    def progress(n: int) -> None:
        if n % step == 0 or n == len(lines):
            bar.progress(n / len(lines), text=f"{n} / {len(lines)} lines")

    ok, res = run_audited(
        c,
        "recon.upload",
        f"recon:{org}:{day.isoformat()}",
        {"file": upload.name, "lines": len(lines), "unfinished": unfinished},
        lambda: reconcile_statement(
            c.core, lines, org, day, pay_orgs=orgs, unfinished_ok=confirmed, progress=progress
        ),
    )
    if not ok:
        st.error(md(f"Reconciliation failed: {res}"))
        return
    flash(
        st.session_state,
        PAGE,
        f"Run {res.run_id} ({org} {day.isoformat()}): {res.checked} "
        f"lines checked, {res.matched} matched, {res.differences} differences "
        f"({res.added} new).",
    )
    st.session_state["rc_show"] = {"org": org, "day": day.isoformat()}
    st.rerun()


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("ops")
    render(platform(), _user)
