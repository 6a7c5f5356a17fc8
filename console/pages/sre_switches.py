"""Switches and limits: switch plans (pending runs for one-click approval, the plans in
force with a one-click revert, running a plan), what is in force now (one-click revert),
approvals with impact and before/after, flipping a switch with reason and expiry,
would-be blocks per rule and the trial limit, history and audit logs.

Every reason and name a person typed is shown through ``md()`` (inert Markdown)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import streamlit as st

from alerts.plan_proposals import propose_for_alerts
from console.audit import recent
from console.auth import User, can
from console.pages import platform, require
from console.panel import panel
from console.plan_panels import (
    active_runs,
    dry_run_table,
    pending_runs,
    plan_book,
    plan_history,
    run_form,
    trial_form,
)
from console.safe import md
from console.views.switch_plans import plan_service
from console.views.switches import (
    DEFAULT_HOURS,
    KINDS,
    approvable,
    audit_rows,
    before_after,
    expiry_in,
    in_force_rows,
    merchants_by_pay_org,
    preview_switch,
    run_audited,
    switch_impact,
    switch_rows,
    switch_targets,
)
from stability.breaker_stats import read_stats
from stability.plan_triggers import propose_for_breakers
from stability.switches import SwitchRecord, conflict

user = require("sre")
st.title("Switches and limits")
p = platform()
svc = p.stability.switches
rules = p.stability.guard.base_rules
may_flip = can(user.role, "switch.propose")
FLASH = "sw_flash"


def act(
    action: str,
    target: str,
    detail: dict[str, Any],
    fn: Callable[[], Any],
    done: Callable[[Any], str],
) -> bool:
    """Run a switch change (audited); on success keep ``done(record)`` (Markdown, user text
    escaped) for the next run's confirmation and rerun; on refusal show the service's
    message."""
    result, error = run_audited(p.db.engine, user.username, user.role, action, target, detail, fn)
    if error is not None:
        st.error(md(f"{action} refused: {error}"))
        return False
    assert result is not None
    st.session_state[FLASH] = done(result)
    st.rerun()
    return True  # not reached: st.rerun() ends this run


def until(rec: SwitchRecord) -> str:
    return f"{rec.expires_at:%Y-%m-%d %H:%M} UTC"


flash = st.session_state.pop(FLASH, None)
if flash:
    st.success(flash)
    st.toast(flash, icon=":material/check_circle:")

# -- switch plans ----------------------------------------------------------------------------
plans = plan_service(p.db.engine, p.stability)
with panel("Switch plans", "database"):
    plans.expire_due()
    propose_for_breakers(plans, p.stability.map_store.load(), read_stats(p.db.engine))
    propose_for_alerts(plans, p.db.engine)
    pending_runs(plans, user, act)
    active_runs(plans, user, act)
with panel("Run a plan", "database"):
    run_form(plans, user, act)

# -- now in force ----------------------------------------------------------------------------
with panel("Now in force", "database"):
    now = datetime.now(UTC)
    live = svc.live(now)
    dmap = p.stability.map_store.load()
    rows = in_force_rows(live, dmap, rules, now)
    by_id = {r.id: r for r in live}
    if not rows:
        st.caption("No switch is in force.")
    confirming = st.session_state.get("sw_confirm_revert")
    for row in rows:
        rec = by_id[row["id"]]
        with st.container(border=True, key=f"sw_row_{rec.id}"):
            left, right = st.columns([5, 1])
            left.markdown(
                f"**#{rec.id} {md(rec.kind)} {md(rec.target)}** · by {md(row['who'])} · "
                f"until **{until(rec)}** ({row['left']} left)"
            )
            left.markdown(f"Reason: {md(rec.reason)}")
            left.markdown(f"Before: {md(row['before'])} → after: {md(row['after'])}")
            if not can(user.role, "switch.revert"):
                continue
            if confirming != rec.id:
                if right.button("Revert", key=f"sw_revert_{rec.id}", type="primary"):
                    st.session_state["sw_confirm_revert"] = rec.id
                    st.rerun()
                continue
            st.warning(
                f"Revert #{rec.id} ({md(rec.kind)} {md(rec.target)})? It stops applying in "
                "every process within a second."
            )
            why = st.text_input(
                "Revert reason", value="no longer needed", key=f"sw_revert_reason_{rec.id}"
            )
            yes, no = st.columns(2)
            if no.button("Cancel", key=f"sw_revert_cancel_{rec.id}"):
                st.session_state.pop("sw_confirm_revert", None)
                st.rerun()
            if yes.button("Yes, revert", key=f"sw_revert_yes_{rec.id}", type="primary"):
                st.session_state.pop("sw_confirm_revert", None)
                act(
                    "switch.revert",
                    rec.target,
                    {"switch_id": rec.id, "reason": why},
                    partial(svc.revert, rec.id, actor=user.username, reason=why),
                    lambda r: (
                        f"Switch #{r.id} reverted: {md(r.kind)} {md(r.target)} no longer applies."
                    ),
                )

# -- pending approval ------------------------------------------------------------------------
with panel("Pending approval", "database"):
    now = datetime.now(UTC)
    pending = [r for r in svc.live(now) if r.status == "pending"]
    mine = approvable(pending, user.username, now)
    dmap = p.stability.map_store.load()
    merchants = merchants_by_pay_org(p.db.engine) if pending else {}
    if not pending:
        st.caption("Nothing waits for approval.")
    for rec in pending:
        imp = switch_impact(dmap, rules, rec.kind, rec.target, rec.params, merchants)
        before, after = before_after(dmap, rules, rec.kind, rec.target, rec.params)
        with st.container(border=True, key=f"sw_card_{rec.id}"):
            st.markdown(
                f"**#{rec.id} {md(rec.kind)} {md(rec.target)}** proposed by {md(rec.actor)}, "
                f"until **{until(rec)}**"
            )
            st.markdown(f"Reason: {md(rec.reason)}")
            st.markdown(f"Before: {md(before)} → **after: {md(after)}**")
            st.markdown(f"Impact: {md(imp.summary)}")
            st.markdown("Grade: " + (md("; ".join(imp.grades)) or "no caller in the map"))
            c1, c2 = st.columns(2)
            c1.markdown("Core links failing: " + md(", ".join(imp.core_links_failing) or "none"))
            c1.markdown("Core links degraded: " + md(", ".join(imp.core_links_degraded) or "none"))
            c1.markdown("Fails: " + md(", ".join(imp.fails) or "nothing"))
            c2.markdown("Degrades: " + md(", ".join(imp.degrades) or "nothing"))
            c2.markdown("Pay orgs: " + md(", ".join(imp.pay_orgs) or "none directly"))
            who = (
                f"all {len(imp.merchants)} (a core link is hit)"
                if imp.all_merchants
                else ", ".join(imp.merchants) or "none directly"
            )
            c2.markdown("Merchants: " + md(who))
            if rec.actor == user.username and can(user.role, "switch.revert"):
                st.caption("Needs another person's approval.")
                if st.button("Withdraw", key=f"sw_withdraw_{rec.id}"):
                    act(
                        "switch.revert",
                        rec.target,
                        {"switch_id": rec.id, "reason": "withdrawn"},
                        partial(svc.revert, rec.id, actor=user.username, reason="withdrawn"),
                        lambda r: f"Switch #{r.id} withdrawn.",
                    )
                continue
            if rec not in mine or not can(user.role, "switch.approve"):
                continue
            a1, a2, a3 = st.columns([1, 1, 2])
            why = a3.text_input("Rejection reason", key=f"sw_reject_reason_{rec.id}")
            if a1.button("Approve", key=f"sw_approve_{rec.id}", type="primary"):
                act(
                    "switch.approve",
                    rec.target,
                    {"switch_id": rec.id},
                    partial(svc.approve, rec.id, approver=user.username),
                    lambda r: (
                        f"Switch #{r.id} approved: {md(r.kind)} {md(r.target)} is "
                        f"{r.status} until {until(r)}."
                    ),
                )
            if a2.button("Reject", key=f"sw_reject_{rec.id}"):
                act(
                    "switch.reject",
                    rec.target,
                    {"switch_id": rec.id, "reason": why},
                    partial(svc.reject, rec.id, approver=user.username, reason=why),
                    lambda r: f"Switch #{r.id} rejected.",
                )


# -- flip a switch -----------------------------------------------------------------------------
def flip_form(me: User) -> None:
    """Kind, target, parameters, reason and expiry (1 h unless changed), dry run, apply."""
    dmap = p.stability.map_store.load()
    if st.session_state.pop("sw_reset", False):
        st.session_state["sw_reason"] = ""
    c1, c2 = st.columns(2)
    kind = c1.selectbox("Kind", KINDS, key="sw_kind")
    target = c2.selectbox("Target", switch_targets(dmap, rules, kind), key="sw_target") or ""
    params: dict[str, Any] = {}
    if kind == "force_breaker":
        params["state"] = st.radio(
            "State", ["forced_open", "forced_closed"], horizontal=True, key="sw_state"
        )
    elif kind == "set_limit":
        r1, r2 = st.columns(2)
        params["rate"] = r1.number_input(
            "Rate (per second)", min_value=0.1, value=100.0, key="sw_rate"
        )
        params["burst"] = r2.number_input("Burst", min_value=0.1, value=200.0, key="sw_burst")
    reason = st.text_input("Reason (required)", key="sw_reason")
    hours = st.number_input(
        "Expires in hours (required, at most 168)",
        min_value=0.05,
        max_value=168.0,
        value=DEFAULT_HOURS,
        step=0.5,
        key="sw_hours",
    )
    expires_at = expiry_in(hours) if hours else None
    preview = preview_switch(
        dmap, rules, kind, target or "", reason=reason or "", expires_at=expires_at, params=params
    )
    before, after = before_after(dmap, rules, kind, target or "", params)
    st.caption(
        f"Before: {md(before)} → after: {md(after)}"
        + (f" · until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "")
    )
    twin = next((r for r in svc.live() if r.kind == kind and r.target == target), None)
    if twin is not None:
        st.warning(md(str(conflict(twin))))
    confirmed = True
    if preview.needs_approval:
        st.warning(
            f"{md(target)} is a {'core link' if preview.core_link else 'strong dependency'}"
            ": this switch applies only after a second person approves it."
        )
        confirmed = st.checkbox(
            "I understand this affects a strong dependency / core link", key="sw_confirm"
        )
    b1, b2 = st.columns(2)
    if b1.button("Dry run", key="sw_dry_run"):
        st.session_state["sw_preview"] = {
            "kind": preview.kind,
            "target": preview.target,
            "needs_approval": preview.needs_approval,
            "fails": preview.fails,
            "degrades": preview.degrades,
            "problems": preview.problems,
            "before": before,
            "after": after,
        }
    if st.session_state.get("sw_preview"):
        st.json(st.session_state["sw_preview"])
    if not b2.button("Apply switch", key="sw_apply", type="primary", disabled=not may_flip):
        return
    if preview.problems:
        for problem in preview.problems:
            st.error(problem)
        return
    if not confirmed:
        st.error("Tick the confirmation first.")
        return
    st.session_state.pop("sw_preview", None)
    st.session_state["sw_reset"] = True
    detail = {
        "kind": kind,
        "params": params,
        "reason": reason,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    if not act(
        "switch.propose",
        target,
        detail,
        partial(
            svc.propose,
            kind,
            target,
            actor=me.username,
            reason=reason,
            expires_at=expires_at,
            params=params,
        ),
        lambda r: (
            f"Switch #{r.id} is {r.status}. {md(r.kind)} {md(r.target)} until "
            f"{until(r)}"
            + (": it waits for a second person's approval." if r.status == "pending" else ".")
        ),
    ):
        st.session_state.pop("sw_reset", None)


with panel("Flip a switch", "database"):
    flip_form(user)

with panel("Dry run: would-be blocks per rule, last 15 min", "metrics"):
    dry_run_table(p, 900.0)
with panel("Trial limit: a new rate in dry run", "database"):
    trial_form(p, user, act)

# -- history ---------------------------------------------------------------------------------
with panel("Switches", "database"):
    st.dataframe(switch_rows(svc.listing()), hide_index=True, key="sw_table")
with panel("Switch audit log", "database"):
    st.dataframe(audit_rows(svc.audit_log(200)), hide_index=True, key="sw_audit")
with panel("Console audit log", "database"):
    st.dataframe(recent(p.db.engine, 200), hide_index=True, key="console_audit")
with panel("Plan book", "database"):
    plan_book(plans, user, act)
with panel("Plan runs", "database"):
    plan_history(plans)
