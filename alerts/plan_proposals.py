"""Firing alerts propose their plan: an alert whose ``plan`` annotation names a reviewed
plan (``channel SANDBOX_A outage`` on the pay org's channel burn rate, ``degrade
<resource>`` on a breaker kept open) gets a pending run of it, proposed by the system, for
one-click approval on the Switches page."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stability.plan_records import PlanRunRecord
from stability.plan_triggers import propose_plans
from stability.plans import PlanService

from .schema import AlertState


def firing_plans(engine: Engine) -> dict[str, str]:
    """``{plan name: the firing alert naming it}`` from ``alert_states``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(AlertState.rule, AlertState.annotations).where(AlertState.state == "firing")
        ).all()
    out: dict[str, str] = {}
    for rule, notes in rows:
        try:
            plan = json.loads(notes or "{}").get("plan", "")
        except (ValueError, AttributeError):
            continue
        if isinstance(plan, str) and plan:
            out.setdefault(plan, rule)
    return out


def propose_for_alerts(plans: PlanService, engine: Engine) -> list[PlanRunRecord]:
    """Propose the plan of every firing alert that names one (see the module doc)."""
    out = []
    for plan, rule in sorted(firing_plans(engine).items()):
        out += propose_plans(plans, [plan], f"alert:{rule}", f"alert {rule} is firing")
    return out
