"""The default rules for the core links (what each means and what to do: ``docs/runbook.md``).

* SLO burn rates from the SLO spec (:mod:`alerts.slo_spec`): availability per link step
  and per pay org on the channel call, pay latency, the weak dependencies;
* pay p99 latency; compensation, notification and ledger-posting backlogs;
* a pay org's channel down (``channel_down``: a hard outage pages within a minute; the
  burn rates are for slow burns);
* a breaker open or forced open; the trial balance not balancing; recon differences.
"""

from __future__ import annotations

import re

from collectors.query import MetricsQuery, Series

from .base import Rule
from .burnrate import BurnRateRule
from .grade_audit import grade_contradicted_rule
from .meta_rules import meta_rules
from .rules import ThresholdRule
from .slo_latency import LatencyBurnRule
from .slo_spec import STEP_OUTCOMES, Slo, SloSpec, load_spec
from .spec import MinTraffic, QuerySpec, duration, number

REQUESTS = "paywatch_link_requests_total"
LATENCY = "paywatch_link_latency_seconds"
RUNBOOK = "docs/runbook.md#"

GUARD_CALLS = "paywatch_guard_calls_total"
TRIPPED = "paywatch_breaker_tripped"
#: channel_down: at least CHANNEL_DOWN_RATIO of at least CHANNEL_DOWN_MIN_CALLS channel
#: calls to one pay org failed over the last CHANNEL_DOWN_WINDOW_S, or its breaker is
#: tripped. The ratio and the count are the breaker's own defaults (BreakerConfig
#: failure_ratio, min_calls), held over a minute; at 90 % a total outage would need 54 s
#: of the minute to fail before the rule could see it, leaving no time to page within 60 s.
CHANNEL_DOWN_RATIO, CHANNEL_DOWN_MIN_CALLS, CHANNEL_DOWN_WINDOW_S = 0.5, 10, 60.0
_CHANNEL = "channel."


def __getattr__(name: str) -> dict:
    """``STEP_SLOS`` and ``WEAK_SLOS``, read from the SLO spec (no objective lives here)."""
    if name == "STEP_SLOS":  # step -> (objective, min req/s)
        return {
            s.step: (s.objective, s.min_traffic_rps or 0.0)
            for s in load_spec().slos
            if s.kind == "availability" and s.step and s.per is None
        }
    if name == "WEAK_SLOS":  # weak dependency -> objective
        return {s.resource: s.objective for s in load_spec().slos if s.resource}
    raise AttributeError(name)


def _slo_rule(slo: Slo, org: str | None) -> BurnRateRule:
    """One burn-rate rule of the spec (for one pay org when the SLO is per pay org)."""
    name = slo.alert.replace("{org}", org_slug(org)) if org else slo.alert
    match = {"step": slo.step} if slo.step else {}
    labels = {**slo.labels}
    if org:
        match["pay_org"] = labels["pay_org"] = org
    if slo.resource:
        labels["resource"] = match["resource"] = slo.resource
    plan = slo.plan.replace("{org}", org or "")
    if slo.kind == "latency":
        summary = (
            f"{slo.step} requests slower than {(slo.threshold_s or 1.0) * 1000:g} ms are burning "
            f"the {slo.objective:.4g} latency SLO's error budget"
        )
    elif slo.resource:
        summary = f"calls to {slo.resource} (a weak dependency) are failing"
    elif org:
        summary = f"channel calls to {org} are failing"
    else:
        summary = f"{slo.step} is burning its {slo.objective:.4g} success SLO error budget"
    # per-org and per-resource rules share one runbook heading (<org>, <resource>)
    anchor = slo.alert.replace("{org}", "org")
    if slo.resource:
        anchor = "slo_dependency_success_resource"
    common: dict = dict(
        match=match,
        by=slo.by,
        labels=labels,
        windows=slo.windows,
        min_traffic_rps=slo.min_traffic_rps,
        absent_for_s=slo.absent_for_s,
        annotations=_notes(anchor, summary, plan=plan),
    )
    if slo.kind == "latency":
        return LatencyBurnRule(name, slo.objective, threshold_s=slo.threshold_s or 1.0, **common)
    return BurnRateRule(name, slo.objective, metric=slo.metric, outcomes=slo.outcomes, **common)


def slo_rules(spec: SloSpec, pay_orgs: tuple[str, ...] = ()) -> list[BurnRateRule]:
    """The spec's objectives as burn-rate rules, in the spec's order (per-pay-org
    objectives once per org of ``pay_orgs``)."""
    rules: list[BurnRateRule] = []
    for slo in spec.slos:
        for org in pay_orgs if slo.per == "pay_org" else (None,):
            rules.append(_slo_rule(slo, org))
    return rules


def _notes(anchor: str, summary: str, plan: str = "") -> dict[str, str]:
    """Summary and runbook link, and the switch plan that answers the alert (its name,
    as stored: :mod:`stability.plan_seed`), which a firing alert proposes for approval."""
    notes = {"summary": summary, "runbook": RUNBOOK + anchor}
    return {**notes, "plan": plan} if plan else notes


def _gauge(
    name: str,
    metric: str,
    op: str,
    threshold: float,
    *,
    for_s: float,
    severity: str,
    summary: str,
    match: dict[str, str] | None = None,
    by: tuple[str, ...] = (),
    absent_for_s: float | None = None,
    agg: str = "max",
    plan: str = "",
) -> ThresholdRule:
    return ThresholdRule(
        name,
        QuerySpec("latest", metric, dict(match or {}), by=by, window=900, agg=agg),
        op,
        threshold,
        for_s=for_s,
        severity=severity,
        annotations=_notes(name, summary, plan),
        absent_for_s=absent_for_s,
    )


def org_slug(org: str) -> str:
    """A pay org code as a rule-name fragment: ``SANDBOX_A`` → ``sandbox_a``."""
    return re.sub(r"[^a-z0-9_]", "_", org.lower())


def _channels_down(query: MetricsQuery, at: float) -> list[Series]:
    """Per pay org whose channel is down (see :data:`CHANNEL_DOWN_RATIO`): the failed share
    of its calls over the window, or 1 when only its breaker says so (calls stopped)."""
    calls = {"step": "channel_call"}
    window = CHANNEL_DOWN_WINDOW_S
    counts = query.count(REQUESTS, window=window, at=at, match=calls, by=("pay_org",))
    enough = {
        s.labels.get("pay_org", "")
        for s in counts
        if s.value is not None and s.value >= CHANNEL_DOWN_MIN_CALLS
    }
    failed: dict[str, float] = {}
    for outcome in STEP_OUTCOMES.bad:  # what the channel SLO counts as failed
        for s in query.ratio(
            REQUESTS,
            REQUESTS,
            window=window,
            at=at,
            match_num={**calls, "outcome": outcome},
            match_den=calls,
            by=("pay_org",),
        ):
            if s.value is not None:
                org = s.labels.get("pay_org", "")
                failed[org] = failed.get(org, 0.0) + s.value
    down: dict[str, float] = {}
    for org, share in failed.items():
        if org in enough and org and share >= CHANNEL_DOWN_RATIO:
            down[org] = share
    for s in query.latest(TRIPPED, at=at, by=("resource",), max_age=window, agg="max"):
        res = s.labels.get("resource", "")
        if res.startswith(_CHANNEL) and len(res) > len(_CHANNEL) and (s.value or 0.0) >= 1:
            down.setdefault(res[len(_CHANNEL) :], 1.0)
    return [Series({"pay_org": o, "resource": _CHANNEL + o}, v) for o, v in sorted(down.items())]


def _channel_down_promql() -> str:
    w = duration(CHANNEL_DOWN_WINDOW_S)
    calls = f'{REQUESTS}{{step="channel_call",pay_org!=""}}'
    bad = "|".join(STEP_OUTCOMES.bad)
    errors = f'{REQUESTS}{{step="channel_call",pay_org!="",outcome=~"{bad}"}}'
    ratio = f"sum by (pay_org) (rate({errors}[{w}])) / sum by (pay_org) (rate({calls}[{w}]))"
    count = f"sum by (pay_org) (increase({calls}[{w}]))"
    # both sides labelled {pay_org, resource}, so ``or`` keeps one series per org
    return (
        f"label_replace(\n  ({ratio}) >= {number(CHANNEL_DOWN_RATIO)}\n"
        f"  and {count} >= {CHANNEL_DOWN_MIN_CALLS},\n"
        '  "resource", "channel.$1", "pay_org", "(.+)"\n)\nor\n'
        f'label_replace(\n  max by (resource) ({TRIPPED}{{resource=~"channel\\\\..+"}}) >= 1,\n'
        '  "pay_org", "$1", "resource", "channel\\\\.(.+)"\n)\n'
    )


def channel_down_rule() -> ThresholdRule:
    """``channel_down``: a pay org's channel failed at least half of its (at least 10) calls
    in the last minute, or its breaker keeps calls away; pages at once (no hold), per pay
    org, and stays firing while the breaker is open (calls stop, so the ratio has no data)
    until it closes after recovery."""
    return ThresholdRule(
        "channel_down",
        _channels_down,
        ">",
        0,
        severity="page",
        promql=_channel_down_promql(),
        annotations=_notes(
            "channel_down",
            "the channel of {{ $labels.pay_org }} is down: its calls failed at {{ $value }} "
            "over the last minute, or its breaker keeps calls away",
            plan="channel {{ $labels.pay_org }} outage",
        ),
    )


def build_default_rules(pay_orgs: tuple[str, ...] = (), spec: SloSpec | None = None) -> list[Rule]:
    """Every default rule; the SLO burn rates from ``spec`` (default: :func:`load_spec`)."""
    rules: list[Rule] = []
    rules += slo_rules(spec or load_spec(), pay_orgs)
    rules.append(channel_down_rule())
    rules.append(
        ThresholdRule(
            "pay_latency_p99_high",
            QuerySpec("quantile", LATENCY, {"step": "pay"}, by=("pay_org",), window=300, q=0.99),
            ">",
            1.0,
            for_s=300,
            severity="page",
            min_traffic=MinTraffic(
                QuerySpec("rate", REQUESTS, {"step": "pay"}, by=("pay_org",), window=300), 0.05
            ),
            annotations=_notes(
                "pay_latency_p99_high",
                "pay p99 latency via {{ $labels.pay_org }} is {{ $value }}s (> 1s)",
            ),
        )
    )
    rules += [
        _gauge(
            "compensation_backlog_high",
            "paywatch_compensation_backlog",
            ">",
            100,
            match={"status": "pending"},
            for_s=600,
            severity="ticket",
            summary="{{ $value }} compensation tasks pending",
        ),
        _gauge(
            "compensation_needs_hands",
            "paywatch_compensation_backlog",
            ">",
            0,
            match={"status": "manual"},
            for_s=300,
            severity="ticket",
            summary="{{ $value }} compensation tasks need manual handling",
        ),
        _gauge(
            "notification_backlog_high",
            "paywatch_notification_backlog",
            ">",
            1000,
            for_s=600,
            severity="ticket",
            summary="{{ $value }} merchant notifications waiting",
        ),
        _gauge(
            "pending_postings_high",
            "paywatch_pending_postings",
            ">",
            500,
            for_s=600,
            severity="ticket",
            summary="{{ $value }} ledger postings not yet applied",
        ),
        _gauge(
            # tripped, not state >= 2: forced_closed (4) is an operator's choice, not an
            # outage, and a dead dependency's breaker flips open <-> half_open (1), which
            # would restart the hold every cool-down
            "breaker_open",
            "paywatch_breaker_tripped",
            ">=",
            1,
            by=("resource",),
            for_s=60,
            severity="page",
            summary="breaker for {{ $labels.resource }} has kept calls away for a minute",
            plan="degrade {{ $labels.resource }}",  # shipped for weak dependencies only
        ),
        _gauge(
            "trial_balance_broken",
            "paywatch_trial_balance_ok",
            "<",
            1,
            for_s=0,
            severity="page",
            absent_for_s=7200,
            agg="min",
            summary="the ledger trial balance does not balance",
        ),
        _gauge(
            "recon_differences",
            "paywatch_recon_differences",
            ">",
            0,
            by=("kind",),
            for_s=0,
            severity="ticket",
            summary="{{ $value }} reconciliation differences of kind {{ $labels.kind }}",
        ),
    ]
    rules.append(grade_contradicted_rule())
    rules += meta_rules(_notes)  # is paywatch itself watching: alerts/meta_rules.py
    return rules


def default_rules(
    pay_orgs: tuple[str, ...] | list[str] = (), spec: SloSpec | None = None
) -> list[Rule]:
    """The default rules for the core links (:func:`build_default_rules`)."""
    return build_default_rules(tuple(pay_orgs), spec)
