"""Switch, audit, breaker and drill read functions for the SRE pages. What a switch does
(:mod:`console.views.switch_effects`) is importable from here too."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from console.audit import record
from console.views.switch_effects import (
    SwitchImpact,
    before_after,
    in_force_rows,
    merchants_by_pay_org,
    switch_impact,
    time_left,
)
from simulator.sandbox_config import knob_request
from stability.depmap import DependencyMap, impact
from stability.errors import StabilityError
from stability.limits import LimitRule
from stability.policy import (
    acting_targets,
    approval_policy,
    is_core_link,
    is_strong_dependency,
)
from stability.switches import KINDS, MAX_HORIZON, SwitchRecord

__all__ = [
    "DEFAULT_HOURS",
    "KINDS",
    "SwitchImpact",
    "SwitchPreview",
    "approvable",
    "audit_rows",
    "before_after",
    "breaker_rows",
    "expiry_in",
    "in_force_rows",
    "knob_request",
    "merchants_by_pay_org",
    "run_audited",
    "preview_switch",
    "switch_impact",
    "switch_rows",
    "switch_targets",
    "time_left",
    "weak_targets",
]
T = TypeVar("T")
#: the expiry a new switch gets unless the person changes it
DEFAULT_HOURS = 1.0


def switch_rows(
    records: Iterable[SwitchRecord], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Switches as table rows, with whether each is in force at ``now``."""
    now = now or datetime.now(UTC)
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "target": r.target,
            "params": json.dumps(r.params, sort_keys=True) if r.params else "",
            "status": r.status,
            "in_force": r.status == "active" and r.expires_at > now,
            "actor": r.actor,
            "approved_by": r.approved_by or "",
            "reason": r.reason,
            "requires_approval": r.requires_approval,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
        }
        for r in records
    ]


def approvable(
    records: Iterable[SwitchRecord], username: str, now: datetime | None = None
) -> list[SwitchRecord]:
    """Pending, unexpired switches ``username`` may approve (someone else proposed them)."""
    now = now or datetime.now(UTC)
    return [
        r for r in records if r.status == "pending" and r.actor != username and r.expires_at > now
    ]


def audit_rows(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``SwitchService.audit_log`` entries with before/after as compact JSON."""
    return [
        {
            "id": e["id"],
            "at": e["at"],
            "actor": e["actor"],
            "action": e["action"],
            "target": e["target"],
            "switch_id": e["switch_id"],
            "reason": e["reason"],
            "before": json.dumps(e["before"], sort_keys=True, default=str),
            "after": json.dumps(e["after"], sort_keys=True, default=str),
            "version": e["version"],
        }
        for e in entries
    ]


def breaker_rows(
    events: Iterable[Mapping[str, Any]], resource: str | None = None
) -> list[dict[str, Any]]:
    return [dict(e) for e in events if resource in (None, "", e["resource"])]


def switch_targets(dmap: DependencyMap, rules: Iterable[LimitRule], kind: str) -> list[str]:
    """The targets offered for ``kind``: only those whose switch acts (a guarded call
    reads it: :func:`stability.policy.acting_targets`), resources or limit rules."""
    return sorted(acting_targets(dmap, rules).get(kind, []))


@dataclass(frozen=True)
class SwitchPreview:
    """What a switch would do (a dry run: nothing is written)."""

    kind: str
    target: str
    needs_approval: bool
    strong_dependency: bool
    core_link: bool
    fails: list[str]
    degrades: list[str]
    problems: list[str]


def preview_switch(
    dmap: DependencyMap,
    rules: Iterable[LimitRule],
    kind: str,
    target: str,
    *,
    reason: str = "",
    expires_at: datetime | None = None,
    params: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> SwitchPreview:
    """Validate a switch like :meth:`SwitchService.propose` would and say whether it needs
    approval and what depends on its target."""
    rules = list(rules)
    now = now or datetime.now(UTC)
    problems = []
    if kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}")
    if not target.strip():
        problems.append("a target is required")
    if not reason.strip():
        problems.append("a reason is required")
    if expires_at is None:
        problems.append("an expiry is required")
    elif not now < expires_at <= now + MAX_HORIZON:
        problems.append("expiry must be in the future and within 7 days")
    if kind == "force_breaker" and (params or {}).get("state") not in (
        "forced_open",
        "forced_closed",
    ):
        problems.append("force_breaker needs state forced_open or forced_closed")
    resource = target
    if kind in ("set_limit", "dry_run_limit"):
        rule = next((r for r in rules if r.name == target), None)
        resource = rule.resource if rule else target
    needs = approval_policy(lambda: dmap, lambda: rules)(kind, target)
    known = {r.name for r in dmap.resources}
    fails: list[str] = []
    degrades: list[str] = []
    if resource in known and kind in ("degrade", "force_breaker"):
        imp = impact(dmap, resource)
        fails, degrades = imp.fails, imp.degrades
    return SwitchPreview(
        kind,
        target,
        needs,
        is_strong_dependency(dmap, resource),
        is_core_link(dmap, resource),
        fails,
        degrades,
        problems,
    )


def expiry_in(hours: float, now: datetime | None = None) -> datetime:
    """An expiry ``hours`` from ``now`` (timezone-aware)."""
    return (now or datetime.now(UTC)) + timedelta(hours=hours)


def weak_targets(dmap: DependencyMap) -> list[str]:
    """Resources a degrade applies to at once (no approval): called, only through weak
    edges, and not a core link; sorted."""
    called = {e.callee for e in dmap.edges}
    return [
        r.name
        for r in dmap.resources
        if r.name in called and not r.core_link and not is_strong_dependency(dmap, r.name)
    ]


def run_audited(
    engine: Engine,
    actor: str,
    role: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    fn: Callable[[], T],
) -> tuple[T | None, str | None]:
    """Run a switch change and write the console audit row with its outcome. Returns
    ``(result, None)``, or ``(None, the refusal's message)`` when the switch service
    refused it (the caller shows the message through ``md()``: it names people)."""
    try:
        result = fn()
    except StabilityError as exc:
        record(
            engine,
            actor=actor,
            role=role,
            action=action,
            target=target,
            detail={**detail, "ok": False, "error": str(exc)[:500]},
        )
        return None, str(exc)
    record(
        engine, actor=actor, role=role, action=action, target=target, detail={**detail, "ok": True}
    )
    return result, None
