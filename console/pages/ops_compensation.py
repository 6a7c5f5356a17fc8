"""Operations: the compensation queue (filter, retry now, resolve by hand) and manual
pay items.

Page convention: ``render(ctx)`` with ``ctx`` carrying ``platform``, ``user``, ``role``
and optionally ``audit`` (or ``render(platform, user)``; see
:mod:`console.reports.context`). Run by ``st.navigation`` the file signs the user in
through :func:`console.pages.require` and renders itself. Operators and above act;
lower roles see the queue read-only.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.reports.context import page_context, run_audited, table
from console.reports.ops import compensation_kinds, compensation_rows, manual_items
from paycore.jobs.tasks import STATUSES, TaskQueue

ALL = "(all)"


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Compensation queue")
    may_act = c.can("ops")
    queue = TaskQueue(c.db, c.core.ids, clock=c.core.clock, worker_id=f"console:{c.user}")
    backlog = queue.backlog()
    for col, status in zip(st.columns(len(STATUSES)), STATUSES, strict=True):
        col.metric(status, backlog.get(status, 0))
    f1, f2 = st.columns(2)
    status = f1.selectbox("Status", [ALL, *STATUSES], key="comp_status")
    kind = f2.selectbox("Kind", [ALL, *compensation_kinds(c.db)], key="comp_kind")
    rows = compensation_rows(c.db, status=None if status == ALL else status,
                             kind=None if kind == ALL else kind)  # fmt: skip
    st.dataframe(table(rows), hide_index=True)
    if not may_act:
        st.info("Read-only: operators and above can retry or resolve tasks.")
    elif rows:
        st.subheader("Act on a task")
        labels = {r.id: f"{r.id} · {r.kind} · {r.biz_key} · {r.status}" for r in rows}
        task_id = st.selectbox("Task", list(labels), format_func=labels.__getitem__,
                               key="comp_task")  # fmt: skip
        note = st.text_input("Note (required to resolve)", key="comp_note")
        b1, b2 = st.columns(2)
        if b1.button("Retry now", key="comp_retry"):
            ok, res = run_audited(c, "compensation.retry_now", f"task:{task_id}",
                                  {"note": note}, lambda: queue.manual_retry_now(
                                      task_id, c.user, note))  # fmt: skip
            _show(ok, res, f"Task {task_id} will run again shortly.")
        if b2.button("Resolve manually", key="comp_resolve", type="primary"):
            if not note.strip():
                st.error("A note is required to resolve a task by hand.")
            else:
                ok, res = run_audited(c, "compensation.resolve", f"task:{task_id}",
                                      {"note": note}, lambda: queue.resolve_manually(
                                          task_id, c.user, note))  # fmt: skip
                _show(ok, res, f"Task {task_id} resolved.")
    st.subheader("Manual pay items")
    st.dataframe(table(manual_items(c.db)), hide_index=True)


def _show(ok: bool, res: Any, message: str) -> None:
    if ok:
        st.success(message)
    else:
        st.error(f"Failed: {res}")


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("ops")
    render(platform(), _user)
