"""Switch plans and the readable dry run, for the Switches page: a plan's steps and what a
run did, the plan service over the platform's switches, and would-be blocks per limit rule
(the guard's ``dry_run_blocked`` outcomes over a window)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from alerts.plan_silence import silence_handlers
from collectors.query import MetricsQuery
from console.views.runbook import runbook_anchors_for
from stability.limits import LimitRule
from stability.plan_records import ACTIVE, PlanRecord, PlanRunRecord, run_of
from stability.plan_schema import PlanRun
from stability.plan_steps import describe
from stability.plans import PlanService
from stability.switch_records import SwitchSnapshot


def plan_service(engine: Engine, stability: Any) -> PlanService:
    """The plan service over a platform's stability runtime (``p.stability``: its switch
    service, the guard's map and rules), with silences; the shipped plans for the map's
    pay orgs are stored the first time (never overwriting one)."""
    guard = stability.guard
    svc = PlanService(
        engine,
        stability.switches,
        dmap=lambda: guard.map,
        rules=lambda: guard.base_rules,
        handlers=silence_handlers(engine),
    )
    svc.seed_shipped()
    return svc


def _did(done: Mapping[str, Any]) -> str:
    if done.get("noop"):
        return f"already in force (#{done.get('existing')})"
    if "switch_id" in done:
        text = f"switch #{done['switch_id']}"
        if done.get("params", {}).get("rate") is not None:
            text += f" (rate {done['params']['rate']:g}/s)"
        old = done.get("replaced")
        return text + (f", replacing #{old['id']}" if old else "")
    if "silence_id" in done:
        return f"silence #{done['silence_id']}"
    if "annotation_id" in done:
        return f"annotation #{done['annotation_id']}"
    return ""


def _undid(undone: Mapping[str, Any]) -> str:
    if "restored" in undone:
        return f"undone; #{undone['restored_from']} restored as #{undone['restored']}"
    return "undone"


def run_steps(run: PlanRunRecord) -> list[str]:
    """Each step of ``run`` in words, with what it did and whether it was undone."""
    by_step = {e["step"]: e for e in run.applied}
    lines = []
    for i, step in enumerate(run.steps, 1):
        line = f"{i}. {describe(step)}"
        entry = by_step.get(i)
        if entry is not None:
            line += f" → {_did(entry['done'])}"
            if "undone" in entry:
                line += f" · {_undid(entry['undone'])}"
            if "undo_error" in entry:
                line += f" · undo failed: {entry['undo_error']}"
        lines.append(line)
    return lines


def run_rows(runs: Iterable[PlanRunRecord], now: datetime) -> list[dict[str, Any]]:
    """Plan runs as table rows (newest first as given)."""
    return [
        {
            "run": r.id,
            "plan": r.plan,
            "status": "expired" if r.status == "active" and r.expires_at <= now else r.status,
            "proposed_by": r.actor,
            "approved_by": r.approved_by or "",
            "ended_by": r.ended_by or "",
            "reason": r.reason,
            "trigger": r.trigger,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "error": r.error,
        }
        for r in runs
    ]


def plan_rows(plans: Iterable[PlanRecord]) -> list[dict[str, Any]]:
    """The plan book as table rows: steps in words, review, runbook sections."""
    return [
        {
            "plan": p.name,
            "status": p.status,
            "author": p.author,
            "reviewed_by": p.reviewed_by or "",
            "steps": "; ".join(describe(s) for s in p.steps),
            "triggers": ", ".join(p.triggers),
            "runbook": ", ".join(runbook_anchors_for(p.name)),
        }
        for p in plans
    ]


def dry_run_rules(
    rules: Iterable[LimitRule], snapshot: SwitchSnapshot
) -> list[tuple[LimitRule, dict[str, Any]]]:
    """The rules counting in dry run now, each with its trial rate override (if any)."""
    return [
        (r, dict(snapshot.limits.get(r.name, {})))
        for r in rules
        if r.dry_run or r.name in snapshot.dry_run
    ]


#: the would-be blocks of limit rules in dry run, per rule (collectors.metrics)
DRY_RUN_BLOCKED = "paywatch_limit_dry_run_blocked_total"


def would_block(
    query: MetricsQuery,
    now: float,
    rules: Iterable[LimitRule],
    snapshot: SwitchSnapshot,
    *,
    window: float = 300.0,
) -> list[dict[str, Any]]:
    """Per rule in dry run: the calls it would have refused over ``window`` (the guard's
    would-be blocks of that rule, ``paywatch_limit_dry_run_blocked_total{rule}``), at
    which rate, and per second."""
    rows = dry_run_rules(rules, snapshot)
    if not rows:
        return []
    counted = {
        s.labels.get("rule", ""): s.value or 0.0
        for s in query.count(DRY_RUN_BLOCKED, window=window, at=now, by=("rule",))
    }
    out = []
    for rule, over in rows:
        blocks = round(counted.get(rule.name, 0.0))
        rate = float(over.get("rate", rule.rate))
        burst = float(over.get("burst", over.get("rate", rule.burst)))
        out.append(
            {
                "rule": rule.name,
                "resource": rule.resource,
                "counted_at": f"rate {rate:g}/s, burst {burst:g}"
                + (" (trial)" if "rate" in over else ""),
                "would_block": blocks,
                "per_second": round(blocks / window, 3),
            }
        )
    return out


def plans_in_force(engine: Engine, now: datetime) -> list[PlanRunRecord]:
    """Plan runs in force at ``now`` (active, not past expiry), oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(PlanRun)
            .where(PlanRun.status == ACTIVE, PlanRun.expires_at > now)
            .order_by(PlanRun.id)
        ).all()
    return [run_of(r) for r in rows]
