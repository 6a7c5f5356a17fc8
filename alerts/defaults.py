"""The default rules for the core links (what each means and what to do: ``docs/runbook.md``).

* success ratio per link step as SLO burn rates (trade_create, pay, callback, refund),
  and per pay org on the channel call;
* pay p99 latency; compensation, notification and ledger-posting backlogs;
* a breaker open or forced open; the trial balance not balancing; recon differences.
"""

from __future__ import annotations

import re

from .base import Rule
from .burnrate import BurnRateRule
from .grade_audit import grade_contradicted_rule
from .rules import ThresholdRule
from .spec import MinTraffic, QuerySpec

REQUESTS = "paywatch_link_requests_total"
LATENCY = "paywatch_link_latency_seconds"
RUNBOOK = "docs/runbook.md#"

#: step → (SLO, min req/s below which the burn rate does not page)
STEP_SLOS: dict[str, tuple[float, float]] = {
    "trade_create": (0.999, 0.05),
    "pay": (0.999, 0.05),
    "callback": (0.999, 0.05),
    "refund": (0.995, 0.01),
}
CHANNEL_SLO = 0.99


#: weak dependency → its success SLO (the map's): a burn-rate page proposes "degrade X"
WEAK_SLOS: dict[str, float] = {"notification": 0.99, "ledger.hot_account": 0.999, "risk": 0.999}
GUARD_CALLS = "paywatch_guard_calls_total"


def _weak_dependency_burn(resource: str, slo: float) -> BurnRateRule:
    """Calls to a weak dependency failing (the guard's per-edge outcomes, every caller):
    its ``degrade <resource>`` plan is proposed while it fires."""
    return BurnRateRule(
        f"slo_dependency_success_{org_slug(resource)}",
        slo,
        match={"resource": resource},
        metric=GUARD_CALLS,
        labels={"resource": resource},
        min_traffic_rps=0.02,
        annotations=_notes(
            "slo_dependency_success_resource",
            f"calls to {resource} (a weak dependency) are failing",
            plan=f"degrade {resource}",
        ),
    )


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


def build_default_rules(pay_orgs: tuple[str, ...] = ()) -> list[Rule]:
    rules: list[Rule] = []
    for step, (slo, min_rps) in STEP_SLOS.items():
        name = f"slo_{step}_success"
        rules.append(
            BurnRateRule(
                name,
                slo,
                step=step,
                min_traffic_rps=min_rps,
                absent_for_s=1800 if step == "pay" else None,
                annotations=_notes(
                    name, f"{step} is burning its {slo:.4g} success SLO error budget"
                ),
            )
        )
    for org in pay_orgs:
        name = f"slo_channel_call_success_{org_slug(org)}"
        rules.append(
            BurnRateRule(
                name,
                CHANNEL_SLO,
                match={"step": "channel_call", "pay_org": org},
                labels={"pay_org": org},
                min_traffic_rps=0.02,
                annotations=_notes(  # the heading is slo_channel_call_success_<org>
                    "slo_channel_call_success_org",
                    f"channel calls to {org} are failing",
                    plan=f"channel {org} outage",
                ),
            )
        )
    rules += [_weak_dependency_burn(res, slo) for res, slo in WEAK_SLOS.items()]
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
    return rules


def default_rules(pay_orgs: tuple[str, ...] | list[str] = ()) -> list[Rule]:
    """The default rules for the core links (:func:`build_default_rules`)."""
    return build_default_rules(tuple(pay_orgs))
