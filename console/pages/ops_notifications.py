"""Operations: merchant notifications not delivered (pending or given up), with their
attempts, and a manual resend.

Page convention: see :mod:`console.pages.ops_compensation`.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.reports.context import page_context, run_audited, table
from console.reports.ops import notification_rows
from paycore.notify.delivery import NotificationDelivery

VIEWS = {"pending and given up": ("pending", "gave_up"), "pending": ("pending",),
         "given up": ("gave_up",), "delivered": ("delivered",)}  # fmt: skip


def _delivery(c: Any) -> NotificationDelivery:
    # resend and backlog only update/count rows: nothing is signed or sent from here
    return NotificationDelivery(c.db, secret="console-resend-only", ids=c.core.ids,
                                concurrency=1, clock=c.core.clock)  # fmt: skip


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Notifications")
    may_act = c.can("ops")
    delivery = _delivery(c)
    try:
        st.metric("Backlog (pending)", delivery.backlog())
        view = st.selectbox("Show", list(VIEWS), key="nt_view")
        rows = notification_rows(c.db, statuses=VIEWS[view])
        st.dataframe([{k: v for k, v in r.items() if k != "history"} for r in table(rows)],
                     hide_index=True)  # fmt: skip
        if not rows:
            return
        labels = {r.id: f"{r.id} · {r.event_type} · {r.merchant_id} · {r.status}" for r in rows}
        nid = st.selectbox("Notification", list(labels), format_func=labels.__getitem__,
                           key="nt_id")  # fmt: skip
        picked = next(r for r in rows if r.id == nid)
        st.caption(f"{len(picked.history)} attempt(s)")
        st.dataframe(table(picked.history), hide_index=True)
        if not may_act:
            st.info("Read-only: operators and above can resend notifications.")
        elif st.button("Resend", key="nt_resend", type="primary"):
            ok, res = run_audited(c, "notification.resend", f"notification:{nid}",
                                  {"event_id": picked.event_id},
                                  lambda: delivery.resend(nid, c.user))  # fmt: skip
            if ok and res:
                st.success(f"Notification {nid} queued for delivery again.")
            else:
                st.error(f"Resend failed: {res}")
    finally:
        delivery.close()


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("ops")
    render(platform(), _user)
