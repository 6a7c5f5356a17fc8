"""The core-link metrics' names and steps, and the health levels numbers are shown in."""

from __future__ import annotations

from alerts.slo_spec import STEP_OUTCOMES

STEPS = (
    "trade_create",
    "pay",
    "callback",
    "refund",
    "channel_call",
    "ledger_posting",
    "notification",
)
REQUESTS = "paywatch_link_requests_total"
LATENCY = "paywatch_link_latency_seconds"
GUARD = "paywatch_guard_outcomes_total"
#: what a step's success counts, as its SLO does (alerts.slo_spec's default for steps):
#: a business refusal (``rejected``) is neither good nor bad
GOOD_OUTCOMES, FAILED_OUTCOMES = STEP_OUTCOMES.good, STEP_OUTCOMES.bad
FALLBACK_OUTCOMES = ("degraded", "fallback")
OK, WARN, BAD, UNKNOWN = "ok", "warn", "bad", "unknown"
HEALTH_COLOURS = {OK: "#2ca02c", WARN: "#ff7f0e", BAD: "#d62728", UNKNOWN: "#7f7f7f"}


def health(success: float | None, *, warn: float = 0.99, bad: float = 0.95) -> str:
    """ok / warn / bad from a success ratio; unknown without traffic."""
    if success is None:
        return UNKNOWN
    return OK if success >= warn else WARN if success >= bad else BAD
