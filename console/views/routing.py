"""The routing rules for the console: rule tables, version diffs, publishing with a reason,
the "which org would this payment take?" preview, and decisions and fallbacks per rule
and org read from the metrics source.

Availability in the preview is the platform's, not only the console process's: a switch
degrading a channel is read from the switch store, a breaker open in any process from the
breaker stats the live map reads, the rest (bulkheads) from the console's guard.
"""

from __future__ import annotations

import difflib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.query import MetricsQuery
from collectors.routing_metrics import ROUTING_DECISIONS, ROUTING_FALLBACKS
from paycore.routing.errors import RoutingError
from paycore.routing.match import CompiledRules
from paycore.routing.model import (
    MATCH_FIELDS,
    RoutePreview,
    RouteQuery,
    RoutingRule,
    RuleSet,
    rules_from_json,
    rules_to_json,
)
from paycore.routing.router import preview
from paycore.routing.store import RoutingStore
from stability.impact_traffic import RecentTraffic, RoutedTraffic

log = logging.getLogger("console.routing")

__all__ = [
    "DECISIONS",
    "FALLBACKS",
    "PAGE",
    "ROUTING_WINDOW",
    "Availability",
    "decision_rows",
    "fallback_rows",
    "granted_orgs",
    "platform_availability",
    "preview_markdown",
    "preview_route",
    "publish_text",
    "routed_traffic",
    "routing_fallbacks",
    "rule_rows",
    "ruleset_diff",
    "version_rows",
    "with_routing",
]

DECISIONS, FALLBACKS = ROUTING_DECISIONS, ROUTING_FALLBACKS
#: the Routing page's address (the Overview links to it)
PAGE = "/sre_routing"
#: the Overview's routing panel looks back this far (seconds)
ROUTING_WINDOW = 300.0
#: resource -> why a pay would skip it now (None: looks available)
Availability = Callable[[str], str | None]
_OPEN = frozenset({"open", "forced_open"})


def _any(value: object) -> str:
    return "any" if value is None else str(value)


def _amount(rule: RoutingRule) -> str:
    if rule.amount_min is None and rule.amount_max is None:
        return "any"
    lo = "0" if rule.amount_min is None else f"{rule.amount_min}"
    hi = "∞" if rule.amount_max is None else f"{rule.amount_max}"
    return f"{lo}–{hi}"


def rule_rows(rules: Iterable[RoutingRule]) -> list[dict[str, Any]]:
    """One table row per rule in the order tried (priority, then as published): what it
    matches, the targets with their share of the volume, the fallback."""
    listed = list(rules)
    tried = {r.name: i for i, r in enumerate(CompiledRules(listed).rules)}
    out = []
    for r in sorted(listed, key=lambda r: (tried.get(r.name, len(listed)), r.priority)):
        total = sum(t.weight for t in r.targets) or 1
        row: dict[str, Any] = {"rule": r.name, "priority": r.priority, "enabled": r.enabled}
        row |= {f: _any(getattr(r, f)) for f in MATCH_FIELDS}
        row["amount"] = _amount(r)
        row["targets"] = ", ".join(
            f"{t.pay_org_no} {t.weight} ({100 * t.weight / total:.0f}%)" for t in r.targets
        )
        row["fallback"] = ", ".join(r.fallback) or "–"
        out.append(row)
    return out


def version_rows(history: Iterable[RuleSet]) -> list[dict[str, Any]]:
    """The published versions, newest first: who, when, why, how many rules."""
    return [
        {
            "version": rs.version,
            "author": rs.author,
            "reason": rs.reason,
            "rules": len(rs.rules),
            "published_at": rs.created_at,
        }
        for rs in history
    ]


def ruleset_diff(old: RuleSet, new: RuleSet) -> str:
    """A unified diff of two versions' rules as the JSON the page edits ("" when equal)."""
    a = rules_to_json(old.rules).splitlines(keepends=True)
    b = rules_to_json(new.rules).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(a, b, f"version {old.version}", f"version {new.version}", n=3)
    )


def publish_text(
    store: RoutingStore, text: str, *, author: str, reason: str, expected_version: int
) -> RuleSet:
    """Publish the edited JSON as the next version, against the version the editor
    showed (:class:`~paycore.routing.errors.StaleRuleSet` when another was published
    meanwhile). No reason, or invalid rules: :class:`RoutingError`, nothing written."""
    if not (reason or "").strip():
        raise RoutingError("a reason is required to publish routing rules", field="reason")
    rules = rules_from_json(text)
    return store.publish(rules, author=author, reason=reason, expected_version=expected_version)


def granted_orgs(engine: Engine, merchant_id: str) -> frozenset[str]:
    """The pay orgs ``merchant_id`` is granted (empty for an unknown merchant)."""
    from paycore.db.schema import MerchantPayOrg

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(MerchantPayOrg.pay_org_no).where(MerchantPayOrg.merchant_id == merchant_id)
        ).scalars()
        return frozenset(rows)


def platform_availability(
    degraded: Iterable[str], breakers: dict[str, str], guard: Any = None
) -> Availability:
    """Why a pay would skip a resource now, platform-wide: degraded by a switch in force,
    a breaker open in some process (``breakers``: resource -> state), else what the
    ``guard`` says (bulkhead full), without consuming anything."""
    down = frozenset(degraded)
    ask = getattr(guard, "availability", None)

    def availability(resource: str) -> str | None:
        if resource in down:
            return "degraded"
        if breakers.get(resource) in _OPEN:
            return "breaker_open"
        return ask(resource) if ask is not None else None

    return availability


class _FirstWeighted(random.Random):
    """A draw that lands on the first target with a weight (the preview is repeatable;
    the rows above say each target's share)."""

    def random(self) -> float:
        return 0.0


@dataclass(frozen=True)
class _Asker:
    availability: Availability


def preview_route(rules: RuleSet, q: RouteQuery, availability: Availability) -> RoutePreview:
    """ "Which org would this payment take?" under ``rules``: the deciding rule, each
    candidate's availability, and the first available one."""
    decision = CompiledRules(rules.rules, rules.version).decide(q, _FirstWeighted())
    return preview(decision, _Asker(availability))


def preview_markdown(pv: RoutePreview, md: Callable[[object], str]) -> str:
    """One line: ``This payment would take **B** (rule r1); candidates: A (degraded), B
    (available)``; ``md`` escapes names people typed."""
    cands = ", ".join(
        f"{md(o.pay_org_no)} ({'available' if o.available else md(o.reason)})" for o in pv.orgs
    )
    if pv.recommended is None:
        head = "No candidate is available: this payment would fail with 503"
    else:
        head = f"This payment would take **{md(pv.recommended)}**"
    return f"{head} (rule {md(pv.rule)}); candidates: {cands}"


def decision_rows(query: MetricsQuery, now: float, *, window: float) -> list[dict[str, Any]]:
    """Routing decisions per rule and pay org in the window (the counter's increase)."""
    rows = query.count(DECISIONS, window=window, at=now, by=("rule", "pay_org"))
    out = [
        {
            "rule": r.labels.get("rule", ""),
            "pay_org": r.labels.get("pay_org", ""),
            "decisions": round(r.value or 0.0, 1),
        }
        for r in rows
        if r.value
    ]
    return sorted(out, key=lambda r: (r["rule"], r["pay_org"]))


def fallback_rows(query: MetricsQuery, now: float, *, window: float) -> list[dict[str, Any]]:
    """Fallbacks per rule, from org, to org and reason in the window."""
    labels = ("rule", "from_org", "to_org", "reason")
    rows = query.count(FALLBACKS, window=window, at=now, by=labels)
    out = [
        {**{k: r.labels.get(k, "") for k in labels}, "fallbacks": round(r.value or 0.0, 1)}
        for r in rows
        if r.value
    ]
    return sorted(out, key=lambda r: (-r["fallbacks"], r["rule"], r["from_org"]))


def routing_fallbacks(
    query: MetricsQuery, now: float, *, window: float = ROUTING_WINDOW
) -> list[dict[str, Any]]:
    """The Overview's panel: fallbacks per rule and org pair in the window (reasons summed),
    most first."""
    table: dict[tuple[str, str, str], float] = {}
    for row in fallback_rows(query, now, window=window):
        key = (row["rule"], row["from_org"], row["to_org"])
        table[key] = table.get(key, 0.0) + row["fallbacks"]
    out = [
        {"rule": r, "from_org": f, "to_org": t, "fallbacks": round(n, 1)}
        for (r, f, t), n in table.items()
    ]
    return sorted(out, key=lambda r: (-r["fallbacks"], r["rule"], r["from_org"]))


def routed_traffic(
    rules: RuleSet, query: MetricsQuery | None, now: float, *, window: float
) -> RoutedTraffic:
    """What the impact query needs of routing: each rule's candidate orgs (targets, then
    fallback) and the decisions per rule and org in the window (none without metrics)."""
    decisions: dict[str, dict[str, float]] = {}
    if query is not None:
        for row in decision_rows(query, now, window=window):
            decisions.setdefault(row["rule"], {})[row["pay_org"]] = row["decisions"]
    candidates = {r.name: r.orgs for r in rules.rules if r.enabled}
    return RoutedTraffic(decisions, candidates)


def with_routing(
    traffic: RecentTraffic, db: Any, query: MetricsQuery | None, now: float, *, window: float
) -> RecentTraffic:
    """``traffic`` with the current rules' view added for the impact query (``db``: the
    platform's Database). The rules unreadable: ``traffic`` as it was (the answer then
    leaves routing out rather than guessing)."""
    try:
        rules = RoutingStore(db).current()
    except Exception:  # noqa: BLE001 - the impact answer stands without routing
        log.warning("routing rules unreadable for the impact query", exc_info=True)
        return traffic
    try:
        routed = routed_traffic(rules, query, now, window=window)
    except Exception:  # noqa: BLE001 - no decisions counted: the fallback orgs still show
        log.warning("routing decisions unreadable for the impact query", exc_info=True)
        routed = routed_traffic(rules, None, now, window=window)
    return replace(traffic, routed=routed)
