"""The default rules for the core links (what each means and what to do: ``docs/runbook.md``).

* SLO burn rates from the SLO spec (:mod:`alerts.slo_spec`): availability per link step
  and per pay org on the channel call, pay latency, the weak dependencies;
* pay p99 latency; compensation, notification and ledger-posting backlogs;
* a breaker open or forced open; the trial balance not balancing; recon differences.
"""

from __future__ import annotations

import re

from .base import Rule
from .burnrate import BurnRateRule
from .grade_audit import grade_contradicted_rule
from .meta_rules import meta_rules
from .rules import ThresholdRule
from .slo_latency import LatencyBurnRule
from .slo_spec import Slo, SloSpec, load_spec
from .spec import MinTraffic, QuerySpec

REQUESTS = "paywatch_link_requests_total"
LATENCY = "paywatch_link_latency_seconds"
RUNBOOK = "docs/runbook.md#"

GUARD_CALLS = "paywatch_guard_calls_total"


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
    metric = GUARD_CALLS if slo.resource else REQUESTS
    return BurnRateRule(name, slo.objective, metric=metric, **common)


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


def build_default_rules(pay_orgs: tuple[str, ...] = (), spec: SloSpec | None = None) -> list[Rule]:
    """Every default rule; the SLO burn rates from ``spec`` (default: :func:`load_spec`)."""
    rules: list[Rule] = []
    rules += slo_rules(spec or load_spec(), pay_orgs)
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
