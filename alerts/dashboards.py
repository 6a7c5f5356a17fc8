"""Grafana dashboards for paywatch, generated from the SLO spec and the metric names.

Four dashboards (core links, channels, stability, SLOs) as Grafana JSON models, plus the
provisioning files that load them and the Prometheus datasource they query. Queries use
fixed windows (no Grafana variables), so every target is plain PromQL that a Prometheus
can evaluate as written; the SLO dashboard reads the ``slo:*`` series recorded by the
exported rules (``paywatch rules export``).
"""

from __future__ import annotations

import json
from typing import Any

from collectors.metrics import STEPS

from .grafana import DASHBOARDS_YML, DATASOURCE_YML, Panel, dashboard
from .slo_spec import Outcomes, Slo, SloSpec

__all__ = ["dashboard_files", "dashboards", "provisioning_files"]


def _rate(metric: str, match: str, by: str, window: str = "5m") -> str:
    return f"sum by ({by}) (rate({metric}{{{match}}}[{window}]))"


def _p99(metric: str, match: str, by: str, window: str = "5m") -> str:
    inner = _rate(f"{metric}_bucket", match, f"le, {by}", window)
    return f"histogram_quantile(0.99, {inner})"


def _error_ratio(metric: str, match: str, outcomes: Outcomes, by: str) -> str:
    """bad / (good + bad), the outcomes as the SLO spec counts them (the SLA report's)."""
    sep = "," if match else ""
    bad, counted = ("|".join(sorted(o)) for o in (outcomes.bad, outcomes.counted))
    bad_rate = _rate(metric, f'{match}{sep}outcome=~"{bad}"', by)
    all_rate = _rate(metric, f'{match}{sep}outcome=~"{counted}"', by)
    return f"{bad_rate} / {all_rate}"


def _step_error_ratios(spec: SloSpec) -> tuple[tuple[str, str], ...]:
    """One target per distinct definition of bad among the steps (one with the shipped
    spec, whose steps all count alike)."""
    groups: dict[Outcomes, list[str]] = {}
    for step in STEPS:
        groups.setdefault(spec.outcomes(step=step), []).append(step)
    return tuple(
        (_error_ratio(_LINK, f'step=~"{"|".join(steps)}"', outcomes, "step"), "{{step}}")
        for outcomes, steps in groups.items()
    )


_LINK = "paywatch_link_requests_total"
_LINK_LAT = "paywatch_link_latency_seconds"
_GUARD = "paywatch_guard_calls_total"
_GUARD_LAT = "paywatch_guard_call_latency_seconds"


def core_links(spec: SloSpec) -> list[Panel]:
    """Every link step: traffic by outcome, error ratio, p99; pay by pay org."""
    steps = "|".join(STEPS)
    return [
        Panel("Requests by step", ((_rate(_LINK, "", "step"), "{{step}}"),), "reqps"),
        Panel(
            "Outcomes (all steps)",
            ((_rate(_LINK, "", "outcome"), "{{outcome}}"),),
            "reqps",
        ),
        Panel("Error ratio by step", _step_error_ratios(spec), "percentunit"),
        Panel(
            "p99 latency by step", ((_p99(_LINK_LAT, f'step=~"{steps}"', "step"), "{{step}}"),), "s"
        ),
        Panel(
            "Pay by pay org",
            ((_rate(_LINK, 'step="pay"', "pay_org, outcome"), "{{pay_org}} {{outcome}}"),),
            "reqps",
        ),
        Panel(
            "Pay p99 by pay org", ((_p99(_LINK_LAT, 'step="pay"', "pay_org"), "{{pay_org}}"),), "s"
        ),
        Panel(
            "Error reasons",
            ((_rate(_LINK, 'reason!=""', "step, reason"), "{{step}} {{reason}}"),),
            "reqps",
        ),
        Panel(
            "Business backlog",
            (
                ("sum(paywatch_orders_processing)", "orders processing"),
                ("sum(paywatch_notification_backlog)", "notifications"),
                ("sum by (status) (paywatch_compensation_backlog)", "compensation {{status}}"),
                ("sum(paywatch_pending_postings)", "pending postings"),
                ("sum by (kind) (paywatch_recon_differences)", "recon {{kind}}"),
            ),
        ),
        Panel(
            "Trial balance ok",
            (("min(paywatch_trial_balance_ok)", "trial balance"),),
            kind="stat",
        ),
        Panel(
            "Business snapshot ok",
            (("min(paywatch_business_snapshot_ok)", "snapshot"),),
            kind="stat",
        ),
    ]


def channels(spec: SloSpec) -> list[Panel]:
    """Channel calls per pay org, the channel front's slots, the guarded edges."""
    call = 'step="channel_call"'
    bad = spec.outcomes(step="channel_call")
    return [
        Panel(
            "Channel calls by pay org", ((_rate(_LINK, call, "pay_org"), "{{pay_org}}"),), "reqps"
        ),
        Panel(
            "Channel error ratio by pay org",
            ((_error_ratio(_LINK, call, bad, "pay_org"), "{{pay_org}}"),),
            "percentunit",
        ),
        Panel("Channel p99 by pay org", ((_p99(_LINK_LAT, call, "pay_org"), "{{pay_org}}"),), "s"),
        Panel(
            "Channel front in flight",
            (("sum by (pay_org) (paywatch_channel_front_in_flight)", "{{pay_org}}"),),
        ),
        Panel(
            "Channel front refused",
            (
                (
                    _rate("paywatch_channel_front_refused_total", "", "pay_org, reason"),
                    "{{pay_org}} {{reason}}",
                ),
            ),
            "reqps",
        ),
        Panel(
            "Callbacks by outcome",
            ((_rate(_LINK, 'step="callback"', "outcome"), "{{outcome}}"),),
            "reqps",
        ),
        Panel(
            "Guarded calls by edge",
            (
                (
                    _rate(_GUARD, "", "caller, resource, outcome"),
                    "{{caller}} -> {{resource}} {{outcome}}",
                ),
            ),
            "reqps",
        ),
        Panel(
            "Guarded call p99 by edge",
            ((_p99(_GUARD_LAT, "", "caller, resource"), "{{caller}} -> {{resource}}"),),
            "s",
        ),
    ]


def stability() -> list[Panel]:
    """Breakers, bulkheads, guard decisions, worker jobs, the alert engine, the processes."""
    return [
        Panel("Targets up", (('up{job=~".*paywatch.*"}', "{{job}} {{instance}}"),)),
        Panel(
            "Build",
            (("sum by (version, python) (paywatch_build_info)", "{{version}} py{{python}}"),),
        ),
        Panel(
            "Breakers tripped", (("max by (resource) (paywatch_breaker_tripped)", "{{resource}}"),)
        ),
        Panel(
            "Breaker transitions",
            (
                (
                    _rate("paywatch_breaker_transitions_total", "", "resource, state"),
                    "{{resource}} {{state}}",
                ),
            ),
            "ops",
        ),
        Panel(
            "Guard decisions",
            (
                (
                    _rate("paywatch_guard_outcomes_total", "", "resource, outcome"),
                    "{{resource}} {{outcome}}",
                ),
            ),
            "ops",
        ),
        Panel(
            "Bulkheads in flight / limit",
            (
                ("sum by (resource) (paywatch_bulkhead_in_flight)", "{{resource}} in flight"),
                ("max by (resource) (paywatch_bulkhead_limit)", "{{resource}} limit"),
            ),
        ),
        Panel(
            "Job runs by outcome",
            ((_rate("paywatch_job_runs_total", "", "job, outcome", "15m"), "{{job}} {{outcome}}"),),
            "ops",
        ),
        Panel(
            "Seconds since a job's last success",
            (("time() - max by (job) (paywatch_job_last_success_timestamp_seconds)", "{{job}}"),),
            "s",
        ),
        Panel(
            "Job p99 duration",
            ((_p99("paywatch_job_duration_seconds", "", "job", "15m"), "{{job}}"),),
            "s",
        ),
        Panel(
            "Alert engine: rounds and failed rule queries",
            (
                ("sum(rate(paywatch_alert_evaluations_total[5m]))", "rounds"),
                (_rate("paywatch_alert_rule_errors_total", "", "rule"), "blind: {{rule}}"),
            ),
            "ops",
        ),
        Panel(
            "HTTP requests by route and status",
            ((_rate("paywatch_http_requests_total", "", "route, status"), "{{route}} {{status}}"),),
            "reqps",
        ),
        Panel(
            "HTTP p99 by route",
            ((_p99("paywatch_http_request_duration_seconds", "", "route"), "{{route}}"),),
            "s",
        ),
        Panel(
            "Process memory and CPU",
            (
                ("sum by (instance) (process_resident_memory_bytes)", "{{instance}} rss"),
                ("sum by (instance) (rate(process_cpu_seconds_total[5m]))", "{{instance}} cpu"),
            ),
        ),
        Panel(
            "Label overflow",
            ((_rate("paywatch_label_overflow_total", "", "label"), "{{label}}"),),
            "ops",
        ),
    ]


def _slo_match(slo: Slo) -> str:
    if "{org}" in slo.alert:  # one recorded SLO per org: its name with the org's slug
        return 'slo=~"' + slo.alert.replace("{org}", ".+") + '"'
    return f'slo="{slo.alert}"'


def slo_panels(spec: SloSpec) -> list[Panel]:
    """Per objective: SLI error ratio against its budget, burn rates, budget remaining."""
    out: list[Panel] = []
    for slo in spec.slos:
        m = _slo_match(slo)
        legend = "{{slo}}" + ("".join(f" {{{{{g}}}}}" for g in slo.by))
        desc = f"{slo.description} (objective {slo.objective * 100:g} %)"
        out.append(
            Panel(
                f"{slo.name}: error ratio",
                (
                    (f"slo:sli_error:ratio_rate5m{{{m}}}", f"5m {legend}"),
                    (f"slo:sli_error:ratio_rate1h{{{m}}}", f"1h {legend}"),
                    (f"1 - slo:objective:ratio{{{m}}}", f"budget {legend}"),
                ),
                "percentunit",
                description=desc,
            )
        )
        out.append(
            Panel(
                f"{slo.name}: burn rate",
                tuple(
                    (f"slo:sli_error:ratio_rate{w}{{{m}}} / {slo.budget:g}", f"{w} {legend}")
                    for w in ("5m", "1h", "6h", "3d")
                ),
                description=f"{desc}; page at 14.4 (1h) and 6 (6h)",
            )
        )
        out.append(
            Panel(
                f"{slo.name}: budget left (30d)",
                ((f"slo:error_budget:remaining{{{m}}}", legend),),
                "percentunit",
                "stat",
                description=desc,
            )
        )
    return out


def dashboards(spec: SloSpec) -> dict[str, dict[str, Any]]:
    """The dashboards by file stem (``paywatch-slos`` ...), as Grafana JSON models."""
    return {
        "paywatch-core-links": dashboard(
            "paywatch-core-links", "paywatch: core links", core_links(spec)
        ),
        "paywatch-channels": dashboard("paywatch-channels", "paywatch: channels", channels(spec)),
        "paywatch-stability": dashboard("paywatch-stability", "paywatch: stability", stability()),
        "paywatch-slos": dashboard("paywatch-slos", "paywatch: SLOs", slo_panels(spec)),
    }


def dashboard_files(spec: SloSpec) -> dict[str, str]:
    """Relative path -> text of every dashboard JSON file."""
    return {
        f"dashboards/{stem}.json": json.dumps(doc, indent=2, sort_keys=True) + "\n"
        for stem, doc in dashboards(spec).items()
    }


def provisioning_files() -> dict[str, str]:
    """Relative path -> text of Grafana's provisioning files."""
    return {
        "provisioning/datasources/paywatch.yml": DATASOURCE_YML,
        "provisioning/dashboards/paywatch.yml": DASHBOARDS_YML,
    }
