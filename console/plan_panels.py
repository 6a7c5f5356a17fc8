"""The Switches page's switch-plan and dry-run panels (Streamlit): pending plan runs with
one-click approval, plans in force with a one-click revert, running a plan, the plan
book, would-be blocks per limit rule and the trial limit form; and the one-line strip of
plans in force the Overview shows.

``act(action, target, detail, fn, done)`` is the page's audited action runner (console
audit row, confirmation kept for the next run, refusals shown in red)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import streamlit as st

from console.auth import User, can
from console.safe import md
from console.urlstate import url_select
from console.views.runbook import runbook_anchors_for
from console.views.switch_plans import (
    plan_rows,
    plans_in_force,
    run_rows,
    run_steps,
    would_block,
)
from console.views.switches import DEFAULT_HOURS, before_after, expiry_in, switch_targets
from stability.plan_records import SYSTEM, PlanRunRecord
from stability.plans import PlanService

Act = Callable[..., bool]
REFRESH_S = 5  #: seconds between refreshes of the Overview's strip


def _until(run: PlanRunRecord) -> str:
    return f"{run.expires_at:%Y-%m-%d %H:%M} UTC"


def _who(run: PlanRunRecord) -> str:
    if run.actor == SYSTEM:
        return f"the platform ({md(run.trigger)})"
    return md(run.actor)


def _steps(run: PlanRunRecord) -> None:
    st.markdown("  \n".join(md(line) for line in run_steps(run)))  # numbered by run_steps


def pending_runs(svc: PlanService, user: User, act: Act) -> None:
    """Pending plan runs: approve or reject (a second person), withdraw (the proposer)."""
    now = datetime.now(UTC)
    runs = [r for r in svc.live_runs(now) if r.status == "pending"]
    if not runs:
        st.caption("No plan run waits for approval.")
    for run in runs:
        with st.container(border=True, key=f"plan_card_{run.id}"):
            st.markdown(
                f"**Plan run #{run.id}: {md(run.plan)}** proposed by {_who(run)}, until "
                f"**{_until(run)}**"
            )
            st.markdown(f"Reason: {md(run.reason)}")
            _steps(run)
            if run.actor == user.username:
                st.caption("Needs another person's approval.")
                if st.button("Withdraw plan run", key=f"plan_withdraw_{run.id}"):
                    fn = partial(svc.reject, run.id, actor=user.username, reason="withdrawn")
                    act("plan.withdraw", run.plan, {"run_id": run.id}, fn, _done("withdrawn"))
                continue
            if not can(user.role, "switch.approve"):
                continue
            a1, a2, a3 = st.columns([1, 1, 2])
            why = a3.text_input("Plan rejection reason", key=f"plan_reject_reason_{run.id}")
            if a1.button("Approve plan", key=f"plan_approve_{run.id}", type="primary"):
                fn = partial(svc.approve, run.id, approver=user.username)
                act("plan.approve", run.plan, {"run_id": run.id}, fn, _done("approved"))
            if a2.button("Reject plan", key=f"plan_reject_{run.id}"):
                fn = partial(svc.reject, run.id, actor=user.username, reason=why)
                act(
                    "plan.reject",
                    run.plan,
                    {"run_id": run.id, "reason": why},
                    fn,
                    _done("rejected"),
                )


def _done(what: str) -> Callable[[PlanRunRecord], str]:
    def text(run: PlanRunRecord) -> str:
        line = f"Plan run #{run.id} ({md(run.plan)}) {what}: it is {run.status}"
        if run.status == "active":
            line += f" until {_until(run)}"
        elif run.status == "pending":
            line += ", waiting for a second person's approval"
        return line + "."

    return text


def active_runs(svc: PlanService, user: User, act: Act) -> None:
    """Plans in force: each step and what it did; one click reverts the whole run."""
    now = datetime.now(UTC)
    runs = [r for r in svc.live_runs(now) if r.status == "active"]
    if not runs:
        st.caption("No plan is in force.")
    for run in runs:
        with st.container(border=True, key=f"plan_active_{run.id}"):
            st.markdown(
                f"**Plan in force: {md(run.plan)}** (run #{run.id}) · by {_who(run)}, approved "
                f"by {md(run.approved_by or '')} · until **{_until(run)}**"
            )
            st.markdown(f"Reason: {md(run.reason)}")
            _steps(run)
            if not can(user.role, "switch.revert"):
                continue
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            why = c1.text_input(
                "Plan revert reason", value="incident over", key=f"plan_revert_reason_{run.id}"
            )
            if c2.button("Revert plan", key=f"plan_revert_{run.id}", type="primary"):
                fn = partial(svc.revert, run.id, actor=user.username, reason=why)
                act(
                    "plan.revert",
                    run.plan,
                    {"run_id": run.id, "reason": why},
                    fn,
                    _done("reverted"),
                )


def run_form(svc: PlanService, user: User, act: Act) -> None:
    """Pick a reviewed plan (``?plan=`` preselects it), one reason and one expiry: the run
    waits for a second person's approval."""
    plans = [p for p in svc.plans() if p.status == "reviewed"]
    if not plans:
        st.caption("No reviewed plan.")
        return
    by_name = {p.name: p for p in plans}
    name = url_select("Plan to run", list(by_name), key="plan")
    plan = by_name[name]
    st.caption(md(plan.description))
    _steps(_preview(plan.steps))
    anchors = runbook_anchors_for(plan.name)
    if anchors:
        st.caption("Runbook: " + ", ".join(f"docs/runbook.md#{md(a)}" for a in anchors))
    reason = st.text_input("Why run this plan (required)", key="plan_reason")
    hours = st.number_input(
        "Plan expires in hours (at most 168)",
        min_value=0.05,
        max_value=168.0,
        value=DEFAULT_HOURS,
        step=0.5,
        key="plan_hours",
    )
    if not st.button(
        "Run plan", key="plan_run", type="primary", disabled=not can(user.role, "switch.propose")
    ):
        return
    fn = partial(svc.run, name, actor=user.username, reason=reason, ttl=timedelta(hours=hours))
    detail = {"reason": reason, "hours": hours}
    act("plan.run", name, detail, fn, _done("proposed"))


def _preview(steps: list[dict[str, Any]]) -> PlanRunRecord:
    now = datetime.now(UTC)
    fields: dict[str, Any] = dict.fromkeys(PlanRunRecord.__dataclass_fields__)
    fields.update(id=0, plan="", steps=steps, applied=[], created_at=now, expires_at=now)
    return PlanRunRecord(**fields)


def plan_book(svc: PlanService, user: User, act: Act) -> None:
    """Every plan with its steps, review and runbook sections; review a draft."""
    plans = svc.plans()
    st.dataframe(plan_rows(plans), hide_index=True, key="plan_book")
    drafts = [p for p in plans if p.status == "draft" and p.author != user.username]
    if drafts and can(user.role, "switch.approve"):
        name = st.selectbox("Draft to review", [p.name for p in drafts], key="plan_draft")
        if st.button("Mark reviewed", key="plan_review"):
            fn = partial(svc.review, name, reviewer=user.username)
            act("plan.review", name, {}, fn, lambda p: f"Plan {md(p.name)} reviewed.")


def plan_history(svc: PlanService) -> None:
    st.dataframe(run_rows(svc.runs(200), datetime.now(UTC)), hide_index=True, key="plan_runs")


def dry_run_table(p: Any, window: float) -> None:
    """Would-be blocks per rule in dry run over ``window`` seconds."""
    snap = p.stability.switches.snapshot()
    now = datetime.now(UTC).timestamp()
    rules = p.stability.guard.base_rules
    rows = would_block(p.observability.query, now, rules, snap, window=window)
    if not rows:
        st.caption("No limit rule counts in dry run. Start a trial limit below.")
        return
    st.dataframe(rows, hide_index=True, key="dry_run_blocks")


def trial_form(p: Any, user: User, act: Act) -> None:
    """A trial limit: a rule's new rate counted in dry run, in one switch change."""
    rules = p.stability.guard.base_rules
    targets = switch_targets(p.stability.map_store.load(), rules, "dry_run_limit")
    if not targets:
        st.caption("No limit rule acts.")
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    rule = c1.selectbox("Limit rule", targets, key="trial_rule")
    rate = c2.number_input("Trial rate (per second)", min_value=0.1, value=100.0, key="trial_rate")
    burst = c3.number_input("Trial burst", min_value=1.0, value=200.0, key="trial_burst")
    params = {"rate": rate, "burst": burst}
    dmap = p.stability.map_store.load()
    before, after = before_after(dmap, rules, "dry_run_limit", rule, params)
    st.caption(f"Before: {md(before)} → after: {md(after)}")
    reason = st.text_input("Why this trial (required)", key="trial_reason")
    hours = st.number_input(
        "Trial for hours", min_value=0.05, max_value=168.0, value=DEFAULT_HOURS, key="trial_hours"
    )
    if not st.button(
        "Start trial", key="trial_start", disabled=not can(user.role, "switch.propose")
    ):
        return
    fn = partial(
        p.stability.switches.propose,
        "dry_run_limit",
        rule,
        actor=user.username,
        reason=reason,
        expires_at=expiry_in(hours),
        params=params,
    )
    act(
        "switch.propose",
        rule,
        {"kind": "dry_run_limit", "params": params, "reason": reason, "trial": True},
        fn,
        lambda r: (
            f"Trial limit #{r.id} is {r.status}: {md(r.target)} counts rate {rate:g}/s in dry "
            "run" + (" once a second person approves it." if r.status == "pending" else ".")
        ),
    )


@st.fragment(run_every=REFRESH_S)
def plans_strip(engine: Any) -> None:
    """The plans in force, one line each (the Overview shows it above the alerts)."""
    for run in plans_in_force(engine, datetime.now(UTC)):
        st.info(
            f"Plan in force: **{md(run.plan)}** (run #{run.id}), by {_who(run)}, approved by "
            f"{md(run.approved_by or '')}, until {_until(run)}. {md(run.reason)}",
            icon=":material/playlist_play:",
        )
