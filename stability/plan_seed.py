"""The plans shipped with the platform: one outage plan per pay org, and one "degrade X"
plan per weak dependency. :meth:`PlanBook.seed` stores the missing ones as reviewed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: weak dependencies with a shipped "degrade X" plan (skipped when X does not act)
WEAK = ("notification", "ledger.hot_account", "risk", "coupon")
SILENCE_MIN = 30


def org_slug(org: str) -> str:
    """``SANDBOX_A`` → ``sandbox_a``, as the alert rules name a pay org."""
    return re.sub(r"[^a-z0-9_]", "_", org.lower())


def outage_plan(org: str) -> dict[str, Any]:
    """``channel <org> outage``: keep calls away from the org, lower its limit for when it
    comes back, silence its per-org alerts for 30 minutes, mark the charts."""
    res = f"channel.{org}"
    return {
        "name": f"channel {org} outage",
        "description": (
            f"Pay org {org} is down: its breaker is forced open (payments through it fail "
            "fast, the other orgs go on), its total limit halved, its alerts silenced for "
            f"{SILENCE_MIN} minutes, the charts annotated."
        ),
        "steps": [
            {"kind": "force_breaker", "target": res, "state": "forced_open"},
            {"kind": "set_limit", "target": f"{res}.total", "factor": 0.5},
            {"kind": "silence", "matchers": {"pay_org": org}, "minutes": SILENCE_MIN},
            {"kind": "annotate", "text": f"channel {org} outage plan"},
        ],
        "triggers": [f"alert:slo_channel_call_success_{org_slug(org)}"],
    }


def degrade_plan(resource: str) -> dict[str, Any]:
    """``degrade <resource>``: stop calling a weak dependency (callers take their fallback),
    silence its breaker alert, mark the charts."""
    return {
        "name": f"degrade {resource}",
        "description": (
            f"{resource} is failing or slow: stop calling it (its callers take their "
            f"fallback), silence its breaker alert for {SILENCE_MIN} minutes, annotate the charts."
        ),
        "steps": [
            {"kind": "degrade", "target": resource},
            {
                "kind": "silence",
                "matchers": {"alertname": "breaker_open", "resource": resource},
                "minutes": SILENCE_MIN,
            },
            {"kind": "annotate", "text": f"degrade {resource} plan"},
        ],
        "triggers": [f"breaker:{resource}"],
    }


def default_plans(pay_orgs: Iterable[str]) -> list[dict[str, Any]]:
    """Every shipped plan for these pay orgs."""
    return [*(outage_plan(o) for o in pay_orgs), *(degrade_plan(r) for r in WEAK)]
