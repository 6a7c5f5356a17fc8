"""What a switch does: who feels it (links, pay orgs, merchants), its target before and
after, and the switches in force with how long they have left."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from paycore.db.schema import Merchant, MerchantPayOrg
from stability.depmap import DependencyMap, impact
from stability.limits import LimitRule
from stability.switches import SwitchRecord


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
        if kind == "dry_run_limit" and "rate" in params:  # a trial limit
            trial = _limit_text(params["rate"], params.get("burst", params["rate"]))
            return f"enforced: {base}", f"trial: {trial} counted in dry run, nothing refused"
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
