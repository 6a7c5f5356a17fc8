"""Switch, audit, breaker and drill read functions for the SRE pages."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from console.audit import record
from paycore.db.schema import Merchant, MerchantPayOrg
from simulator.sandbox_config import knob_request
from stability.depmap import DependencyMap, impact
from stability.errors import StabilityError
from stability.limits import LimitRule
from stability.policy import approval_policy, is_core_link, is_strong_dependency
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
    """Suggested targets: resources, or limit rule names for the limit kinds."""
    if kind in ("set_limit", "dry_run_limit"):
        return sorted(r.name for r in rules)
    return [r.name for r in dmap.resources]


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


# -- what a switch does: impact, before/after, what is in force ------------------------------


@dataclass(frozen=True)
class SwitchImpact:
    """Who feels a switch: the grades of the edges into its resource, what fails and what
    degrades (core links among them), the pay orgs and the merchants affected."""

    resource: str
    grades: list[str]  # "link.pay → risk: weak (fallback: ...)"
    fails: list[str]
    degrades: list[str]
    core_links_failing: list[str]
    core_links_degraded: list[str]
    pay_orgs: list[str]
    merchants: list[str]
    all_merchants: bool
    summary: str  # one line: what the switch does to the calls


def merchants_by_pay_org(engine: Engine) -> dict[str, list[str]]:
    """Active merchants granted each pay org (``{org: [merchant ids]}``), and ``"*"``: all."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(MerchantPayOrg.pay_org_no, Merchant.merchant_id)
            .join(Merchant, Merchant.merchant_id == MerchantPayOrg.merchant_id)
            .where(Merchant.status == "active")
            .order_by(MerchantPayOrg.pay_org_no, Merchant.merchant_id)
        ).all()
    out: dict[str, list[str]] = {}
    for org, merchant in rows:
        out.setdefault(str(org), []).append(str(merchant))
    out["*"] = sorted({m for ms in out.values() for m in ms})
    return out


def _resource_of(kind: str, target: str, rules: Iterable[LimitRule]) -> str:
    if kind in ("set_limit", "dry_run_limit"):
        rule = next((r for r in rules if r.name == target), None)
        return rule.resource if rule else target
    return target


def _summary(kind: str, params: Mapping[str, Any]) -> str:
    if kind == "degrade":
        return "calls are not made: weak callers take their fallback, strong callers fail fast"
    if kind == "force_breaker" and params.get("state") == "forced_closed":
        return "the breaker stays closed: every call goes through, even while it fails"
    if kind == "force_breaker":
        return "the breaker stays open: weak callers take their fallback, strong ones fail fast"
    if kind == "set_limit":
        return "calls above the new limit are refused (fallback or 429)"
    return "the limit only counts what it would refuse; nothing is refused"


def switch_impact(
    dmap: DependencyMap,
    rules: Iterable[LimitRule],
    kind: str,
    target: str,
    params: Mapping[str, Any] | None = None,
    merchants: Mapping[str, list[str]] | None = None,
) -> SwitchImpact:
    """What ``kind`` on ``target`` does to the links, pay orgs and merchants (the map's
    :func:`~stability.depmap.impact` of its resource; nothing for a forced-closed breaker or
    a dry run, which refuse no call)."""
    params, merchants = dict(params or {}), merchants or {}
    resource = _resource_of(kind, target, list(rules))
    known = {r.name for r in dmap.resources}
    grades = [
        f"{e.caller} → {e.callee}: {e.grade}" + (f" (fallback: {e.fallback})" if e.fallback else "")
        for e in dmap.edges
        if e.callee == resource
    ]
    refuses = kind in ("degrade", "set_limit") or params.get("state") == "forced_open"
    fails = degrades = core_f = core_d = []
    if resource in known and refuses:
        imp = impact(dmap, resource)
        fails, degrades = imp.fails, imp.degrades
        core_f, core_d = imp.core_links_failing, imp.core_links_degraded
    hit = [resource, *fails] if refuses else []
    orgs = sorted({n.split(".", 1)[1] for n in hit if n.startswith("channel.")})
    # a channel's failure reaches the core links only for the merchants of its pay org
    every = bool(core_f or core_d) and not orgs
    if every:
        affected = list(merchants.get("*", []))
    else:
        affected = sorted({m for org in orgs for m in merchants.get(org, [])})
    return SwitchImpact(
        resource,
        grades,
        fails,
        degrades,
        core_f,
        core_d,
        orgs,
        affected,
        every,
        _summary(kind, params),
    )


def _limit_text(rate: Any, burst: Any) -> str:
    return f"rate {float(rate):g}/s, burst {float(burst):g}"


def before_after(
    dmap: DependencyMap,
    rules: Iterable[LimitRule],
    kind: str,
    target: str,
    params: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """What ``target`` does without the switch (before) and with it (after), in words."""
    params = dict(params or {})
    rules = list(rules)
    if kind in ("set_limit", "dry_run_limit"):
        rule = next((r for r in rules if r.name == target), None)
        base = _limit_text(rule.rate, rule.burst) if rule else "no such limit rule"
        if kind == "dry_run_limit":
            return f"enforced: {base}", f"dry run: {base} counted, nothing refused"
        after = _limit_text(params.get("rate", 0), params.get("burst", params.get("rate", 0)))
        return f"enforced: {base}", f"enforced: {after}"
    if kind == "force_breaker":
        return "breaker automatic (opens on its window's ratios)", f"breaker {params.get('state')}"
    edges = [e for e in dmap.edges if e.callee == target]
    timeout = ", ".join(sorted({f"{e.timeout_ms} ms" for e in edges})) or "?"
    fallbacks = sorted({e.fallback for e in edges if e.grade == "weak" and e.fallback})
    strong = sorted(e.caller for e in edges if e.grade == "strong")
    after = "not called" + (f"; fallback: {'; '.join(fallbacks)}" if fallbacks else "")
    if strong:
        after += f"; {', '.join(strong)} fail fast"
    return f"called (timeout {timeout})", after


def time_left(until: datetime, now: datetime) -> str:
    """``45 min`` / ``2 h 05 min`` / ``expired``."""
    seconds = int((until - now).total_seconds())
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod(max(1, seconds // 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def in_force_rows(
    records: Iterable[SwitchRecord],
    dmap: DependencyMap,
    rules: Iterable[LimitRule],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The switches in force at ``now`` (active, not past expiry), newest first: kind,
    target, who, reason, until when (and how long that is), before and after."""
    now = now or datetime.now(UTC)
    rules = list(rules)
    rows = []
    for r in sorted(records, key=lambda r: r.id, reverse=True):
        if r.status != "active" or r.expires_at <= now:
            continue
        before, after = before_after(dmap, rules, r.kind, r.target, r.params)
        who = r.actor + (f", approved by {r.approved_by}" if r.approved_by else "")
        rows.append(
            {
                "id": r.id,
                "kind": r.kind,
                "target": r.target,
                "who": who,
                "reason": r.reason,
                "until": r.expires_at,
                "left": time_left(r.expires_at, now),
                "before": before,
                "after": after,
            }
        )
    return rows


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
