"""Switches and limits: flip with reason and expiry, approval by a second person, dry run,
audit log."""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from console.audit import recent
from console.auth import can
from console.pages import audited, platform, require
from console.views.switches import (
    KINDS,
    approvable,
    audit_rows,
    expiry_in,
    preview_switch,
    switch_rows,
    switch_targets,
)

user = require("sre")
st.title("Switches and limits")
p = platform()
svc = p.stability.switches
dmap = p.stability.map_store.load()
rules = p.stability.guard.base_rules
may_flip = can(user.role, "switch.propose")

st.subheader("Flip a switch")
c1, c2 = st.columns(2)
kind = c1.selectbox("Kind", KINDS, key="sw_kind")
target = c2.selectbox("Target", switch_targets(dmap, rules, kind), key="sw_target")
params: dict[str, Any] = {}
if kind == "force_breaker":
    params["state"] = st.radio(
        "State", ["forced_open", "forced_closed"], horizontal=True, key="sw_state"
    )
elif kind == "set_limit":
    r1, r2 = st.columns(2)
    params["rate"] = r1.number_input("Rate (per second)", min_value=0.1, value=100.0, key="sw_rate")
    params["burst"] = r2.number_input("Burst", min_value=0.1, value=200.0, key="sw_burst")
reason = st.text_input("Reason (required)", key="sw_reason")
hours = st.number_input(
    "Expires in hours (required, at most 168)",
    min_value=0.05,
    max_value=168.0,
    value=None,
    step=0.5,
    key="sw_hours",
)
expires_at = expiry_in(hours) if hours else None
preview = preview_switch(
    dmap, rules, kind, target or "", reason=reason or "", expires_at=expires_at, params=params
)
confirmed = True
if preview.needs_approval:
    st.warning(
        f"{target} is a {'core link' if preview.core_link else 'strong dependency'}: "
        "this switch applies only after a second person approves it."
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
    }
if st.session_state.get("sw_preview"):
    st.json(st.session_state["sw_preview"])
flip = b2.button("Apply switch", key="sw_apply", type="primary", disabled=not may_flip)
if flip:
    if preview.problems:
        for problem in preview.problems:
            st.error(problem)
    elif not confirmed:
        st.error("Tick the confirmation first.")
    else:
        detail = {
            "kind": kind,
            "params": params,
            "reason": reason,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        rec = audited(
            user,
            "switch.propose",
            target,
            detail,
            lambda: svc.propose(
                kind,
                target,
                actor=user.username,
                reason=reason,
                expires_at=expires_at,
                params=params,
            ),
        )
        if rec is not None:
            st.session_state.pop("sw_preview", None)
            st.success(f"Switch #{rec.id} is {rec.status}.")

listing = svc.listing()
st.subheader("Pending approval")
pending = [r for r in listing if r.status == "pending"]
mine = approvable(pending, user.username)
if not pending:
    st.caption("Nothing waits for approval.")
for rec in pending:
    with st.container(border=True):
        st.markdown(
            f"**#{rec.id} {rec.kind} {rec.target}** by {rec.actor}: {rec.reason} "
            f"(expires {rec.expires_at:%Y-%m-%d %H:%M} UTC)"
        )
        if rec not in mine:
            st.caption("Needs another person's approval.")
            continue
        if not can(user.role, "switch.approve"):
            continue
        a1, a2, a3 = st.columns([1, 1, 2])
        why = a3.text_input("Rejection reason", key=f"sw_reject_reason_{rec.id}")
        if a1.button("Approve", key=f"sw_approve_{rec.id}"):
            rid = rec.id
            if audited(
                user,
                "switch.approve",
                rec.target,
                {"switch_id": rid},
                partial(svc.approve, rid, approver=user.username),
            ):
                st.rerun()
        if a2.button("Reject", key=f"sw_reject_{rec.id}"):
            rid = rec.id
            if audited(
                user,
                "switch.reject",
                rec.target,
                {"switch_id": rid, "reason": why},
                partial(svc.reject, rid, approver=user.username, reason=why),
            ):
                st.rerun()

st.subheader("Switches")
st.dataframe(switch_rows(listing), hide_index=True, key="sw_table")
active = [r for r in listing if r.status in ("active", "pending")]
if active and may_flip:
    r1, r2, r3 = st.columns([1, 2, 1])
    sid = r1.selectbox("Revert switch", [r.id for r in active], key="sw_revert_id")
    why_revert = r2.text_input("Revert reason", key="sw_revert_reason")
    if r3.button("Revert", key="sw_revert"):
        tgt = next(r.target for r in active if r.id == sid)
        if audited(
            user,
            "switch.revert",
            tgt,
            {"switch_id": sid, "reason": why_revert},
            lambda: svc.revert(int(sid), actor=user.username, reason=why_revert),
        ):
            st.rerun()

st.subheader("Switch audit log")
st.dataframe(audit_rows(svc.audit_log(200)), hide_index=True, key="sw_audit")
st.subheader("Console audit log")
st.dataframe(recent(p.db.engine, 200), hide_index=True, key="console_audit")
