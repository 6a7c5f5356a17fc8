"""Which pay org a pay's channel part goes to: the org the pay names, or the routing
rules' candidates, skipping those the stability layer refuses now.

A pay that names its org (``PayRequest.pay_org_no``) takes that org only, as before
routing: the guard refusing it is the pay's 503. Otherwise, with a router wired in, the
rules give candidates in order and each is asked of the guard in turn
(``guard.admit("channel.<org>", caller="link.pay")``): an org whose switch is degraded,
whose breaker is open, whose limit refuses or whose bulkhead is full is skipped and
counted as a fallback; the first admitted org is the pay's. All refusing: the first
refusal is raised (the 503 a pay of that org gets today).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any, NamedTuple

from stability.errors import BulkheadFull, DependencyFailed, RateLimited

from .context import BizContext
from .deps import CoreDeps
from .models import PayRequest, TradeView
from .routing import RouteQuery, channel_resource
from .tools import tools_of

#: what the guard raises for an org that must not be called now (BreakerOpen and
#: BulkheadFull are DependencyFailed)
REFUSALS = (DependencyFailed, RateLimited)
CALLER = "link.pay"


class Routed(NamedTuple):
    """The pay's context with its chosen org, the candidates left after it (for a retry
    on the next org), and the rule that decided (None: not routed by the rules)."""

    ctx: BizContext
    alternatives: tuple[str, ...] = ()
    rule: str | None = None


def pays_by_channel(deps: CoreDeps, req: PayRequest) -> bool:
    """True when a part of the pay settles by a channel's result (the registry's tools
    say which)."""
    tools = tools_of(deps)
    return any(tools.get(t.tool).settles_by_channel for t in req.tools)


def route_pay(deps: CoreDeps, trade: TradeView, req: PayRequest, ctx: BizContext) -> Routed:
    """The org the pay's channel part takes (see the module docstring). ``ctx``: the
    pay's context with the org it names or the trade's."""
    if not pays_by_channel(deps, req):
        return Routed(ctx)
    guard, router = deps.guard, deps.router
    if req.pay_org_no is not None or router is None:
        if guard is not None:
            _admit(guard, ctx)
        return Routed(ctx)
    info = deps.merchants.get(trade.merchant_id)
    decision = router.decide(
        RouteQuery(
            merchant_id=trade.merchant_id,
            order_type=trade.order_type,
            sub_type=trade.sub_type,
            amount=trade.amount,
            currency=trade.currency,
            user_segment=req.user_segment,
            default_org=trade.pay_org_no,
            granted=frozenset(info.pay_orgs),
        )
    )
    candidates = decision.candidates
    if guard is None:  # nothing to ask: the first candidate
        router.record(decision.rule, candidates[0], ())
        return Routed(with_org(ctx, candidates[0]), candidates[1:], decision.rule)
    return _first_admitted(guard, router, decision.rule, candidates, ctx)


def _first_admitted(
    guard: Any, router: Any, rule: str, candidates: tuple[str, ...], ctx: BizContext
) -> Routed:
    """The first candidate the guard admits; each one refused before it is a fallback."""
    skipped: list[tuple[str, str]] = []
    full: list[str] = []  # bulkhead full: taken only when every other org refuses
    first: Exception | None = None
    for i, org in enumerate(candidates):
        bulkhead = guard.bulkhead(f"channel.{org}")
        if bulkhead is not None and bulkhead.in_flight >= bulkhead.cap:
            full.append(org)
            skipped.append((org, "bulkhead_full"))
            continue
        org_ctx = ctx if org == ctx.pay_org_no else with_org(ctx, org)
        try:
            _admit(guard, org_ctx)
        except REFUSALS as exc:
            first = first or exc
            skipped.append((org, _reason(exc)))
            continue
        router.record(rule, org, skipped)
        return Routed(org_ctx, candidates[i + 1 :], rule)
    for j, org in enumerate(full):  # its cap may have room by the send, as without routing
        org_ctx = with_org(ctx, org)
        try:
            _admit(guard, org_ctx)
        except REFUSALS as exc:
            first = first or exc
            continue
        router.record(rule, org, [s for s in skipped if s[0] != org])
        return Routed(org_ctx, tuple(full[j + 1 :]), rule)
    raise first or BulkheadFull("no pay org admitted the pay")  # first is set by now


@lru_cache(maxsize=4096)
def with_org(ctx: BizContext, org: str) -> BizContext:
    """``ctx`` with ``org`` as its pay org (validated once per context and org: building
    a context checks its four codes, a cost the pay link pays per candidate otherwise)."""
    return ctx if ctx.pay_org_no == org else replace(ctx, pay_org_no=org)


def _admit(guard: Any, ctx: BizContext) -> None:
    """Ask the guard for ``channel.<org>`` as the pay link; a refusal it only reports
    (a weak edge) is raised as one it raises."""
    resource = channel_resource(ctx.pay_org_no)
    _, refusal = guard.admit(resource, caller=CALLER, labels=ctx.as_labels())
    if refusal is not None:
        raise DependencyFailed(
            f"{resource} is unavailable ({refusal})", resource=resource, reason=refusal
        )


def _reason(exc: Exception) -> str:
    """A refusal's reason for the fallback metric (degraded, breaker_open, blocked, ...)."""
    if isinstance(exc, RateLimited):
        return "blocked"
    return str(getattr(exc, "reason", "error"))
