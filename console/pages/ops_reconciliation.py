"""Operations: reconciliation runs and differences, resolving a difference with a note,
and reconciling an uploaded channel statement (CSV) for a pay org and day.

Page convention: see :mod:`console.pages.ops_compensation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import streamlit as st

from console.reports.context import page_context, run_audited, table
from console.reports.ops import (
    difference_kinds,
    parse_statement_csv,
    recon_differences,
    recon_runs,
    resolve_difference,
)
from paycore.recon import reconcile_day

ALL = "(all)"


def _pick(value: str) -> str | None:
    return None if value in (ALL, "") else value


def _orgs(c: Any) -> list[str]:
    settings = getattr(c.platform, "settings", None)
    orgs = list(getattr(settings, "pay_orgs", None) or [])
    orgs += [r.pay_org_no for r in recon_runs(c.db, limit=500)]
    return sorted(set(orgs)) or ["SANDBOX_A"]


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Reconciliation")
    may_act = c.can("ops")
    orgs = _orgs(c)
    f1, f2, f3, f4 = st.columns(4)
    status = f1.selectbox("Difference status", [ALL, "open", "resolved"], key="rc_status")
    kind = f2.selectbox("Class", [ALL, *difference_kinds(c.db)], key="rc_kind")
    org = f3.selectbox("Pay org", [ALL, *orgs], key="rc_org")
    day = f4.text_input("Day (YYYY-MM-DD)", key="rc_day").strip()
    st.subheader("Runs")
    st.dataframe(table(recon_runs(c.db, pay_org_no=_pick(org), day=_pick(day))),
                 hide_index=True)  # fmt: skip
    st.subheader("Differences")
    diffs = recon_differences(c.db, status=_pick(status), kind=_pick(kind),
                              pay_org_no=_pick(org), day=_pick(day))  # fmt: skip
    st.dataframe(table(diffs), hide_index=True)
    if not may_act:
        st.info("Read-only: operators and above can resolve differences and reconcile.")
        return
    open_diffs = [d for d in diffs if d.status == "open"]
    if open_diffs:
        st.subheader("Resolve a difference")
        labels = {d.id: f"{d.id} · {d.kind} · {d.pay_org_no} {d.day} · {d.ref}"
                  for d in open_diffs}  # fmt: skip
        did = st.selectbox("Difference", list(labels), format_func=labels.__getitem__,
                           key="rc_diff")  # fmt: skip
        note = st.text_input("Note (required)", key="rc_note")
        if st.button("Resolve", key="rc_resolve", type="primary"):
            if not note.strip():
                st.error("A note is required to resolve a difference.")
            else:
                ok, res = run_audited(c, "recon.resolve_difference", f"difference:{did}",
                                      {"note": note}, lambda: resolve_difference(
                                          c.db, did, c.user, note, c.now()))  # fmt: skip
                if ok and res:
                    st.success(f"Difference {did} resolved.")
                else:
                    st.error(f"Not resolved: {res if not ok else 'no longer open'}")
    _upload(c, orgs)


def _upload(c: Any, orgs: list[str]) -> None:
    st.subheader("Reconcile a statement file")
    st.caption("CSV header: channel_txn_no,channel_ref,kind,amount,currency,status,settled_at")
    u1, u2 = st.columns(2)
    org = u1.selectbox("Pay org", orgs, key="rc_up_org")
    day = u2.date_input("Day (UTC)", value=c.now().date() - timedelta(days=1), key="rc_up_day")
    upload = st.file_uploader("Statement CSV", type=["csv"], key="rc_file")
    if not st.button("Reconcile", key="rc_run", disabled=upload is None):
        return
    assert upload is not None
    try:
        lines = parse_statement_csv(upload.getvalue())
    except ValueError as exc:
        st.error(str(exc))
        return
    bar = st.progress(0.0, text=f"0 / {len(lines)} lines")

    def feed(_org: str, _day: date) -> Iterator[Any]:
        step = max(1, len(lines) // 100)
        for i, line in enumerate(lines, start=1):
            yield line
            if i % step == 0 or i == len(lines):
                bar.progress(i / len(lines), text=f"{i} / {len(lines)} lines")

    assert isinstance(day, date)
    ok, res = run_audited(c, "recon.upload", f"recon:{org}:{day.isoformat()}",
                          {"file": upload.name, "lines": len(lines)},
                          lambda: reconcile_day(c.core, feed, org, day))  # fmt: skip
    if ok:
        bar.progress(1.0, text="done")
        st.success(f"{res.checked} lines checked, {res.matched} matched, "
                   f"{res.differences} differences ({res.added} new)")  # fmt: skip
        st.json(res.as_dict())
    else:
        st.error(f"Reconciliation failed: {res}")


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("ops")
    render(platform(), _user)
