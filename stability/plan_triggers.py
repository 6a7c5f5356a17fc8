"""Runs the platform proposes itself: when a weak dependency's breaker opens, every
reviewed plan triggered by it (``"breaker:<resource>"``, e.g. "degrade notification")
gets a pending run proposed by :data:`~stability.plan_records.SYSTEM`, for one-click
approval by a person. (The alerts package proposes the plans its firing alerts name:
:func:`alerts.plan_proposals.propose_for_alerts`.)"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from .breaker_stats import BreakerWindow
from .depmap import DependencyMap
from .plan_records import REVIEWED, PlanRunRecord
from .plans import PlanService
from .policy import is_core_link, is_strong_dependency

#: breaker states that keep calls away (an operator's forced_open is deliberate: no proposal)
TRIPPED = ("open", "half_open")
#: a published window older than this belongs to a process that stopped
FRESH = timedelta(minutes=2)
#: a plan proposed (or run) this recently is not proposed again (a rejected proposal
#: stays rejected for a while)
QUIET = timedelta(minutes=15)
PROPOSAL_TTL = timedelta(hours=1)


def weak_only(dmap: DependencyMap, resource: str) -> bool:
    """True when ``resource`` is called, only through weak edges, and not a core link."""
    called = any(e.callee == resource for e in dmap.edges)
    return called and not is_core_link(dmap, resource) and not is_strong_dependency(dmap, resource)


def tripped_weak(dmap: DependencyMap, windows: Iterable[BreakerWindow], now: datetime) -> list[str]:
    """Weak dependencies whose breaker keeps calls away in some live process, sorted."""
    return sorted(
        {
            w.resource
            for w in windows
            if w.state in TRIPPED and now - w.updated_at <= FRESH and weak_only(dmap, w.resource)
        }
    )


def propose_plans(
    plans: PlanService, names: Iterable[str], trigger: str, why: str
) -> list[PlanRunRecord]:
    """Propose a run of each reviewed plan of ``names`` that has no live run and was not
    proposed within :data:`QUIET`; the proposer is the system."""
    now = plans.clock()
    recent = {r.plan for r in plans.runs(limit=200) if now - r.created_at < QUIET}
    reviewed = {p.name for p in plans.plans() if p.status == REVIEWED}
    out = []
    for name in sorted(set(names) & reviewed - recent):
        run = plans.propose(name, trigger=trigger, reason=why, ttl=PROPOSAL_TTL)
        if run is not None:
            out.append(run)
    return out


def propose_for_breakers(
    plans: PlanService, dmap: DependencyMap, windows: Iterable[BreakerWindow]
) -> list[PlanRunRecord]:
    """Propose the plans of every weak dependency whose breaker opened (``windows``: the
    published breaker windows, :func:`stability.breaker_stats.read_stats`)."""
    out = []
    for res in tripped_weak(dmap, windows, plans.clock()):
        trigger = f"breaker:{res}"
        named = [p.name for p in plans.plans() if trigger in p.triggers]
        out += propose_plans(plans, named, trigger, f"the breaker of {res} (weak) is open")
    return out
