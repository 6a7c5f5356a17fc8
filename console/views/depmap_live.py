"""The live dependency map's data: each node's and edge's traffic, breaker and switch state,
its health, and the traffic the impact query weighs.

Health (:func:`stability.edge_stats.health`, Kiali's thresholds): more than 0.1 % errors
is ``warn`` (yellow), more than 20 % ``bad`` (red), no calls ``unknown`` (grey). An open
breaker makes the node and the edges into it red; a half-open one at least yellow; a
resource degraded by a switch is at least yellow and marked ``degraded``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.query import MetricsQuery
from stability.depmap import DependencyMap
from stability.edge_stats import LiveTraffic, Traffic
from stability.impact_traffic import RecentTraffic
from stability.switches import SwitchSnapshot

from .health import BAD, OK, REQUESTS, UNKNOWN, WARN

#: core link -> the step of the core-link metrics that measures it
LINK_STEPS = {
    "link.trade_create": "trade_create",
    "link.pay": "pay",
    "link.refund": "refund",
    "link.callback": "callback",
    "link.notify": "notification",
}
_RANK = {UNKNOWN: 0, OK: 1, WARN: 2, BAD: 3}
_BREAKER = {"open": BAD, "forced_open": BAD, "half_open": WARN}
#: when one resource shows several states (one per process), the one shown
_STATE_ORDER = ("forced_open", "open", "half_open", "forced_closed", "closed")


def worst(*statuses: str) -> str:
    """The worst of ``statuses`` (bad > warn > ok > unknown)."""
    return max(statuses, key=lambda s: _RANK.get(s, 0), default=UNKNOWN)


def breaker_states(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per resource, the state to show from :func:`console.views.depmap.breaker_table` rows
    (a state per process, joined with ``/``: the most severe wins)."""
    out = {}
    for row in rows:
        states = str(row.get("state") or "closed").split("/")
        out[str(row["resource"])] = min(
            states, key=lambda s: _STATE_ORDER.index(s) if s in _STATE_ORDER else 99
        )
    return out


def _fmt(t: Traffic) -> str:
    if t.rps is None:
        return "no traffic" + (f", {t.refused_rps:.1f}/s refused" if t.refused_rps else "")
    err = f"{100 * (t.error_ratio or 0.0):.1f}% err"
    p99 = "" if t.p99_s is None else f" p99 {1000 * t.p99_s:.0f}ms"
    return f"{t.rps:.1f}/s {err}{p99}"


def _link_traffic(row: Mapping[str, Any] | None) -> Traffic:
    if not row or row.get("success") is None:
        return Traffic()
    return Traffic(row.get("rate"), 1.0 - float(row["success"]), row.get("p99_s"))


def node_traffic(
    dmap: DependencyMap, live: LiveTraffic, links: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Traffic]:
    """Per resource: its inbound guarded calls; a core link its own step's requests (the
    core-link metrics); a job (an entry point without a step) the calls it made."""
    steps = {r["step"]: r for r in links}
    entries = set(dmap.roots())
    out = {}
    for r in dmap.resources:
        if r.name in LINK_STEPS:
            out[r.name] = _link_traffic(steps.get(LINK_STEPS[r.name]))
        elif r.name in entries:
            out[r.name] = live.outbound(r.name)
        else:
            out[r.name] = live.node(r.name)
    return out


def live_map(
    dmap: DependencyMap,
    snapshot: SwitchSnapshot | None,
    breakers: Mapping[str, str],
    live: LiveTraffic,
    links: Iterable[Mapping[str, Any]] = (),
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Nodes and edges for :func:`console.views.depmap_graph.graph` and the tables."""
    snap = snapshot or SwitchSnapshot()
    traffic = node_traffic(dmap, live, links)
    nodes: dict[str, dict[str, Any]] = {}
    for r in dmap.resources:
        t, breaker = traffic[r.name], breakers.get(r.name, "closed")
        degraded = r.name in snap.degraded
        status = worst(t.health, _BREAKER.get(breaker, UNKNOWN), WARN if degraded else UNKNOWN)
        tags = [breaker] if breaker != "closed" else []
        tags += ["degraded"] if degraded else []
        head = r.name + (f" [{', '.join(tags)}]" if tags else "")
        nodes[r.name] = {
            "resource": r.name,
            "kind": r.kind,
            "status": status,
            "rps": t.rps,
            "error_ratio": t.error_ratio,
            "p99_s": t.p99_s,
            "refused_rps": t.refused_rps,
            "breaker": breaker,
            "degraded": degraded,
            "forced": snap.forced.get(r.name, ""),
            "label": f"{head}<br>{_fmt(t)}",
            "hover": f"{r.name} ({r.kind}): {_fmt(t)}; breaker {breaker}"
            + ("; degraded by a switch" if degraded else ""),
        }
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for e in dmap.edges:
        t, callee = live.edge(e.caller, e.callee), nodes[e.callee]
        status = worst(t.health, _BREAKER.get(callee["breaker"], UNKNOWN))
        edges[(e.caller, e.callee)] = {
            "caller": e.caller,
            "callee": e.callee,
            "grade": e.grade,
            "status": status,
            "rps": t.rps,
            "error_ratio": t.error_ratio,
            "p99_s": t.p99_s,
            "refused_rps": t.refused_rps,
            "fallback_rps": t.fallback_rps,
            "timeout_ms": e.timeout_ms,
            "retries": e.retries,
            "hover": f"{e.caller} → {e.callee} ({e.grade}, timeout {e.timeout_ms} ms, "
            f"retries {e.retries}): {_fmt(t)}",
        }
    return nodes, edges


def table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the drawing-only fields (label, hover)."""
    return [{k: v for k, v in r.items() if k not in ("label", "hover")} for r in rows]


def recent_traffic(
    engine: Engine, query: MetricsQuery | None, at: float, *, window: float = 300.0
) -> RecentTraffic:
    """Requests/s per link and pay org (the core-link metrics; none without a metrics
    source), merchants per pay org with pay orders in the window, and the grants."""
    from paycore.db.schema import Merchant, MerchantPayOrg, PayOrder

    rates: dict[str, dict[str, float]] = {}
    if query is not None:
        steps = {s: link for link, s in LINK_STEPS.items()}
        for r in query.rate(REQUESTS, window=window, at=at, by=("step", "pay_org")):
            link = steps.get(r.labels.get("step", ""))
            if link is not None and r.value:
                per = rates.setdefault(link, {})
                org = r.labels.get("pay_org", "")
                per[org] = per.get(org, 0.0) + r.value
    since = datetime.fromtimestamp(at, UTC) - timedelta(seconds=window)
    merchants: dict[str, dict[str, int]] = {}
    grants: dict[str, set[str]] = {}
    with engine.connect() as conn:
        paid = conn.execute(
            sa.select(PayOrder.pay_org_no, PayOrder.merchant_id, sa.func.count())
            .where(PayOrder.created_at >= since)
            .group_by(PayOrder.pay_org_no, PayOrder.merchant_id)
        ).all()
        granted = conn.execute(
            sa.select(MerchantPayOrg.merchant_id, MerchantPayOrg.pay_org_no)
            .join(Merchant, Merchant.merchant_id == MerchantPayOrg.merchant_id)
            .where(Merchant.status == "active")
        ).all()
    for org, merchant, n in paid:
        merchants.setdefault(org, {})[merchant] = int(n)
    for merchant, org in granted:
        grants.setdefault(merchant, set()).add(org)
    return RecentTraffic(rates, merchants, {m: frozenset(o) for m, o in grants.items()})


def unhealthy(nodes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Resources shown red now (a merchant's alternative must not be one of them)."""
    return sorted(n for n, s in nodes.items() if s["status"] == BAD)


def impact_hits(
    dmap: DependencyMap, failed: Iterable[str], impacts: Iterable[Any]
) -> dict[str, str]:
    """Name -> ``fails``/``partial``/``degrades`` for the map's outlines: the failed
    resources, the entry points the traffic impact names, what fails or degrades between."""
    from stability.depmap import impact

    hits: dict[str, str] = {}
    for name in failed:
        hits[name] = "fails"
        if dmap.resource(name).kind == "channel":
            continue  # the callers lose one pay org: the entry points say how much
        imp = impact(dmap, name)
        for n in imp.degrades:
            hits.setdefault(n, "degrades")
        for n in imp.fails:
            hits[n] = "fails"
    for i in impacts:
        hits[i.link] = i.effect
    return hits


def breakers_now(rt: Any, engine: Engine) -> dict[str, str]:
    """Each resource's breaker state now: the live processes' windows, the recorded
    events, the switches forcing one (``rt``: the platform's stability runtime)."""
    from stability.breaker_stats import read_stats

    from .depmap import breaker_table

    events = rt.breaker_events.recent(500)
    return breaker_states(breaker_table(read_stats(engine), events, rt.switches.live()))


def attention(nodes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The resources not healthy now (red, yellow, breaker not closed, degraded), worst
    first: what the Overview lists."""
    rows = [
        n
        for n in nodes.values()
        if n["status"] in (BAD, WARN) or n["breaker"] != "closed" or n["degraded"]
    ]
    rows.sort(key=lambda n: (-_RANK.get(n["status"], 0), n["resource"]))
    keep = ("resource", "status", "breaker", "rps", "error_ratio", "p99_s")
    return [
        {**{k: n[k] for k in keep}, "switch": "degraded" if n["degraded"] else ""} for n in rows
    ]
