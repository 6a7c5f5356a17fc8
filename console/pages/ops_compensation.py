"""Operations: the compensation queue (filter, retry now, resolve by hand) and manual
pay items, settled by four-eyes actions (one operator proposes "settle as success" or
"fail and refund" with a reason, a different one approves or rejects; each step audited).

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
    actionable_manual_items,
    actionable_tasks,
    compensation_kinds,
    compensation_rows,
    flash,
    ids_as_text,
    manual_actions_service,
    manual_items,
    take_flash,
)
from console.safe import md
from console.urlstate import url_select
from paycore.jobs.tasks import STATUSES, TaskQueue

ALL = "(all)"
PAGE = "compensation"
NOTE = "comp_note"
REASON = "manual_reason"
#: what each action does, as the picker names it
MANUAL_ACTIONS = {
    "settle_success": "Settle as success",
    "fail_refund": "Fail and refund",
}


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Compensation queue")
    done = take_flash(st.session_state, PAGE)
    if done:
        st.success(md(done))
    if st.session_state.pop(f"{NOTE}_clear", False):
        st.session_state[NOTE] = ""  # before the widget exists: allowed
        st.session_state[REASON] = ""
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
        actions = manual_actions_service(c.core)
        pending = actions.pending()
        st.subheader("Pending proposals")
        if pending:
            st.dataframe(ids_as_text(table(pending)), hide_index=True)
        else:
            st.caption("No proposal is waiting for a second person.")
        if not c.can("ops"):
            st.info("Read-only: operators and above propose and approve manual actions.")
        else:
            _propose(c, actions, {p.item_id for p in pending})
            _decide(c, actions, pending)


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


def _propose(c: Any, actions: Any, waiting: set[int]) -> None:
    """Propose an action on a processing manual item (one waiting proposal per item)."""
    st.subheader("Propose an action")
    items = [i for i in actionable_manual_items(c.db) if i.id not in waiting]
    if not items:
        st.caption("No manual item waits for a proposal.")
        return
    labels = {
        i.id: f"{i.id} · {i.tool} · {i.pay_org_no}/{i.channel_txn_no} · {i.amount}" for i in items
    }
    item_id = st.selectbox(
        "Manual item", list(labels), format_func=labels.__getitem__, key="manual_item"
    )
    action = st.radio(
        "Action",
        list(MANUAL_ACTIONS),
        format_func=MANUAL_ACTIONS.__getitem__,
        key="manual_action",
        horizontal=True,
    )
    reason = st.text_input("Reason (required; e.g. what the channel said)", key=REASON)
    if st.button("Propose", key="manual_propose") and c.can("ops"):
        if not reason.strip():
            st.error("A reason is required to propose a manual action.")
            return
        ok, res = run_audited(
            c,
            "manual_item.propose",
            f"pay_item:{item_id}",
            {"action": action, "reason": reason},
            lambda: actions.propose(item_id, action, c.user, reason),
        )
        _done(ok, res, f"Proposed: {MANUAL_ACTIONS[action]} for item {item_id}.")


def _decide(c: Any, actions: Any, pending: list[Any]) -> None:
    """Approve (a different person than the proposer) or reject a waiting proposal."""
    if not pending:
        return
    st.subheader("Approve or reject")
    labels = {
        p.id: f"{p.id} · item {p.item_id} · {MANUAL_ACTIONS.get(p.action, p.action)} · "
        f"by {p.proposed_by}"
        for p in pending
    }
    action_id = st.selectbox(
        "Proposal", list(labels), format_func=labels.__getitem__, key="manual_pending"
    )
    chosen = next(p for p in pending if p.id == action_id)
    own = chosen.proposed_by == c.user
    if own:
        st.caption("You proposed this one: a second person approves it (you may withdraw it).")
    b1, b2 = st.columns(2)
    if b1.button("Approve", key="manual_approve", type="primary", disabled=own) and c.can("ops"):
        ok, res = run_audited(
            c,
            "manual_item.approve",
            f"manual_action:{action_id}",
            {"item_id": str(chosen.item_id), "action": chosen.action},
            lambda: actions.approve(action_id, c.user),
        )
        _done(ok, res, f"Approved proposal {action_id}: item {chosen.item_id} {res}.")
    label = "Withdraw" if own else "Reject"
    if b2.button(label, key="manual_reject") and c.can("ops"):
        ok, res = run_audited(
            c,
            "manual_item.reject",
            f"manual_action:{action_id}",
            {"item_id": str(chosen.item_id), "action": chosen.action},
            lambda: actions.reject(action_id, c.user),
        )
        _done(ok, res, f"Proposal {action_id} {'withdrawn' if own else 'rejected'}.")


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
