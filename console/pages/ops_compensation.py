"""Operations: the compensation queue (filter, retry now, resolve by hand) and manual
pay items.

Page convention: ``render(ctx)`` with ``ctx`` carrying ``platform``, ``user``, ``role``
and optionally ``audit`` (or ``render(platform, user)``; see
:mod:`console.reports.context`). Run by ``st.navigation`` the file signs the user in
through :func:`console.pages.require` and renders itself. Operators and above act;
lower roles see the queue read-only. The task picker offers only tasks an action
applies to (pending, failed, manual); after an action the page reruns, so every table
shows the new state, and the confirmation survives the rerun.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.panel import panel
from console.reports.context import page_context, run_audited, table
from console.reports.ops import (
    ACTIONABLE_TASKS,
    actionable_tasks,
    compensation_kinds,
    compensation_rows,
    flash,
    ids_as_text,
    manual_items,
    take_flash,
)
from console.safe import md
from console.urlstate import url_select
from paycore.jobs.tasks import STATUSES, TaskQueue

ALL = "(all)"
PAGE = "compensation"
NOTE = "comp_note"


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Compensation queue")
    done = take_flash(st.session_state, PAGE)
    if done:
        st.success(md(done))
    if st.session_state.pop(f"{NOTE}_clear", False):
        st.session_state[NOTE] = ""  # before the widget exists: allowed
    queue = TaskQueue(c.db, c.core.ids, clock=c.core.clock, worker_id=f"console:{c.user}")
    with panel("Backlog", "database"):
        backlog = queue.backlog()
        for col, status in zip(st.columns(len(STATUSES)), STATUSES, strict=True):
            col.metric(status, backlog.get(status, 0))
    with panel("Tasks", "database"):
        f1, f2 = st.columns(2)
        status = url_select("Status", [ALL, *STATUSES], key="status", widget=f1.selectbox)
        kind = url_select("Kind", [ALL, *compensation_kinds(c.db)], key="kind", widget=f2.selectbox)
        status_f = None if status == ALL else status
        kind_f = None if kind == ALL else kind
        rows = compensation_rows(c.db, status=status_f, kind=kind_f)
        st.dataframe(ids_as_text(table(rows)), hide_index=True)
        if not c.can("ops"):
            st.info("Read-only: operators and above can retry or resolve tasks.")
        else:
            _act(c, queue, actionable_tasks(c.db, status=status_f, kind=kind_f))
    with panel("Manual pay items", "database"):
        st.dataframe(ids_as_text(table(manual_items(c.db))), hide_index=True)


def _act(c: Any, queue: TaskQueue, tasks: list[Any]) -> None:
    """The picker (actionable tasks only), the note, retry and resolve."""
    st.subheader("Act on a task")
    if not tasks:
        st.caption(
            f"No task in this view can be retried or resolved (only "
            f"{', '.join(ACTIONABLE_TASKS)} tasks can)."
        )
        return
    labels = {t.id: f"{t.id} · {t.kind} · {t.biz_key} · {t.status}" for t in tasks}
    task_id = st.selectbox("Task", list(labels), format_func=labels.__getitem__, key="comp_task")
    note = st.text_input("Note (required to resolve)", key=NOTE)
    b1, b2 = st.columns(2)
    if b1.button("Retry now", key="comp_retry") and c.can("ops"):
        ok, res = run_audited(
            c,
            "compensation.retry_now",
            f"task:{task_id}",
            {"note": note},
            lambda: queue.manual_retry_now(task_id, c.user, note),
        )
        _done(ok, res, f"Task {task_id} will run again shortly.")
    if b2.button("Resolve manually", key="comp_resolve", type="primary") and c.can("ops"):
        if not note.strip():
            st.error("A note is required to resolve a task by hand.")
            return
        ok, res = run_audited(
            c,
            "compensation.resolve",
            f"task:{task_id}",
            {"note": note},
            lambda: queue.resolve_manually(task_id, c.user, note),
        )
        _done(ok, res, f"Task {task_id} resolved.")


def _done(ok: bool, res: Any, message: str) -> None:
    """On success: keep the confirmation and rerun (every table reads again)."""
    if not ok:
        st.error(md(f"Failed: {res}"))
        return
    flash(st.session_state, PAGE, message)
    st.session_state[f"{NOTE}_clear"] = True
    st.rerun()


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("ops")
    render(platform(), _user)
