"""Drill speed for an embedded platform (:class:`runtime.embedded.EmbeddedPlatform`).

With ``time_factor < 1`` the worker also runs the platform's own jobs at drill speed
(:func:`fast_jobs`): the default alert rules with their windows and hold times scaled
(renamed ``<rule>_fast`` so they never fight the normal evaluator) and an active query
that asks about stuck orders after seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from alerts import AlertEngine
from alerts import default_rules as alert_rules
from alerts.base import BurnWindow, Rule
from alerts.burnrate import BurnRateRule
from alerts.rules import ThresholdRule
from alerts.spec import QuerySpec
from paycore.jobs.active_query import ActiveQuery

from .bootstrap import Platform

Job = tuple[Callable[[], Any], float, str]


def _spec(spec: Any, factor: float) -> Any:
    return replace(spec, window=spec.window * factor) if isinstance(spec, QuerySpec) else spec


def scaled_rule(rule: Rule, factor: float) -> Rule:
    """``rule`` with its windows and hold times multiplied by ``factor``, renamed."""
    absent = getattr(rule, "absent_for_s", None)
    hold = float(getattr(rule, "for_s", 0.0))
    common: dict[str, Any] = {
        "name": f"{rule.name}_fast",
        "for_s": hold * factor,
        "absent_for_s": absent * factor if absent else None,
    }
    if isinstance(rule, BurnRateRule):
        windows = tuple(
            BurnWindow(w.long_s * factor, w.short_s * factor, w.factor, w.severity)
            for w in rule.windows
        )
        return replace(rule, windows=windows, **common)
    if isinstance(rule, ThresholdRule):
        traffic = rule.min_traffic
        if traffic is not None:
            traffic = replace(traffic, spec=_spec(traffic.spec, factor))
        return replace(rule, query=_spec(rule.query, factor), min_traffic=traffic, **common)
    return rule


def fast_jobs(time_factor: float, *, every_s: float = 2.0) -> Callable[[Platform], list[Job]]:
    """Worker jobs at drill speed (see the module docstring), for :class:`EmbeddedPlatform`."""

    def build(platform: Platform) -> list[Job]:
        core, obs = platform.paycore, platform.observability
        rules = [scaled_rule(r, time_factor) for r in alert_rules(platform.settings.pay_orgs)]
        engine = AlertEngine(core.db.engine, obs.query, rules)
        gateway = platform.front.gateway
        after = max(1.0, 60.0 * time_factor)
        query = ActiveQuery(core, gateway, first_after_s=after, interval_s=after)
        return [(engine.evaluate, every_s, "alerts_fast"), (query.run_once, every_s, "query_fast")]

    return build
