"""Operations: merchant notifications not delivered (pending or given up), with their
attempts, and a manual resend.

Page convention: see :mod:`console.pages.ops_compensation`. The picker offers only the
notifications a resend applies to (given up or delivered); pending ones are on the
worker's schedule. After a resend the page reruns, so the tables show the new state.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.panel import panel
from console.reports.context import page_context, run_audited, table
from console.reports.ops import (
    RESENDABLE,
    flash,
    ids_as_text,
    notification_rows,
    resend_notification,
    take_flash,
)
from console.safe import md
from console.urlstate import url_select
from paycore.notify.delivery import NotificationDelivery

VIEWS = {
    "pending and given up": ("pending", "gave_up"),
    "pending": ("pending",),
    "given up": ("gave_up",),
    "delivered": ("delivered",),
}
PAGE = "notifications"


def _delivery(c: Any) -> NotificationDelivery:
    # resend and backlog only update/count rows: nothing is signed or sent from here
    return NotificationDelivery(
        c.db, secret="console-resend-only", ids=c.core.ids, concurrency=1, clock=c.core.clock
    )


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Notifications")
    done = take_flash(st.session_state, PAGE)
    if done:
        st.success(md(done))
    delivery = _delivery(c)
    try:
        with panel("Backlog", "database"):
            st.metric("Backlog (pending)", delivery.backlog())
        with panel("Notifications", "database"):
            view = url_select("Show", list(VIEWS), key="view")
            rows = notification_rows(c.db, statuses=VIEWS[view])
            st.dataframe(
                ids_as_text({k: v for k, v in r.items() if k != "history"} for r in table(rows)),
                hide_index=True,
            )
            _resend(c, delivery, [r for r in rows if r.status in RESENDABLE])
    finally:
        delivery.close()


def _resend(c: Any, delivery: NotificationDelivery, rows: list[Any]) -> None:
    """The picker (resendable notifications only), their attempts and the resend."""
    if not rows:
        st.caption(
            "No notification in this view can be resent: a resend applies to "
            "given-up and delivered ones; pending ones are retried by the worker."
        )
        return
    labels = {r.id: f"{r.id} · {r.event_type} · {r.merchant_id} · {r.status}" for r in rows}
    nid = st.selectbox("Notification", list(labels), format_func=labels.__getitem__, key="nt_id")
    picked = next(r for r in rows if r.id == nid)
    st.caption(f"{len(picked.history)} attempt(s)")
    st.dataframe(table(picked.history), hide_index=True)
    if not c.can("ops"):
        st.info("Read-only: operators and above can resend notifications.")
        return
    if st.button("Resend", key="nt_resend", type="primary") and c.can("ops"):
        ok, res = run_audited(
            c,
            "notification.resend",
            f"notification:{nid}",
            {"event_id": picked.event_id},
            lambda: resend_notification(c.db, delivery, nid, c.user),
        )
        if ok and res:
            flash(st.session_state, PAGE, f"Notification {nid} queued for delivery again.")
            st.rerun()
        st.error(md(f"Resend failed: {res if not ok else 'no such notification'}"))


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("ops")
    render(platform(), _user)
