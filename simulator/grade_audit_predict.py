"""The impact query's predictions a grade audit reports beside what it observed.

Two: the map's structural one (:func:`stability.depmap.impact`: a strong chain fails, a
weak edge on the way degrades) and the traffic-aware one
(:func:`stability.impact_traffic.traffic_impact`: one pay org down fails a link only
for that org's share, merchants granted another org have an alternative), fed with the
traffic the audit measured in its baseline window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from stability.depmap import DependencyMap, impact
from stability.impact_traffic import RecentTraffic, traffic_impact

from .grade_audit_observe import Window


def impact_prediction(dmap: DependencyMap, failed: str) -> dict[str, str]:
    """The impact query (:func:`stability.depmap.impact`) as resource → fails/degrades."""
    found = impact(dmap, failed)
    return {**{n: "degrades" for n in found.degrades}, **{n: "fails" for n in found.fails}}


def baseline_traffic(dmap: DependencyMap, base: Window, merchants: Sequence[Any]) -> RecentTraffic:
    """Per link and pay org the calls/s that passed in the baseline, and the merchants'
    grants (every merchant counted on each pay org it is granted)."""
    rates: dict[str, dict[str, float]] = defaultdict(dict)
    seconds = max(base.seconds, 1e-9)
    for (caller, resource, outcome), n in base.edges.items():
        spec = dmap.resource(resource) if outcome == "pass" else None
        if spec is not None and spec.kind == "channel" and "." in resource:
            org = resource.split(".", 1)[1]
            rates[caller][org] = rates[caller].get(org, 0.0) + n / seconds
    grants = {m.merchant_id: frozenset(m.pay_orgs) for m in merchants}
    by_org: dict[str, dict[str, int]] = defaultdict(dict)
    for merchant, orgs in grants.items():
        for org in orgs:
            by_org[org][merchant] = 1
    return RecentTraffic(dict(rates), dict(by_org), grants)


def traffic_prediction(
    dmap: DependencyMap, failed: str, traffic: RecentTraffic
) -> dict[str, dict[str, str]]:
    """entry point → ``{"effect": fails | partial | degrades, "message": ...}``."""
    return {
        hit.link: {"effect": hit.effect, "message": hit.message}
        for hit in traffic_impact(dmap, [failed], traffic)
    }
