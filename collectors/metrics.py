"""Core-link metrics: link steps, guard outcomes, breaker states, business gauges.

Everything is registered on the :class:`~prometheus_client.CollectorRegistry` passed in
(never the global one), so tests get a fresh registry and nothing exists at import time.

Labels stay bounded: steps, outcomes and breaker states come from fixed sets; pay orgs,
reasons and resources are short codes with a cap on distinct values (see
:mod:`collectors.labels`); order, trade and merchant ids are never labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .business import BusinessCollector, BusinessSnapshot
from .edge_metrics import EdgeMetrics
from .errors import LabelError
from .labels import OTHER, BoundedLabel, is_short_code

__all__ = [
    "BREAKER_STATES",
    "CALLBACK",
    "CHANNEL_CALL",
    "LEDGER_POSTING",
    "NOTIFICATION",
    "PAY",
    "REFUND",
    "TRADE_CREATE",
    "GUARD_OUTCOMES",
    "LATENCY_BUCKETS",
    "LINK_OUTCOMES",
    "STEPS",
    "CoreMetrics",
    "Timed",
    "error_reason",
]

TRADE_CREATE = "trade_create"
PAY = "pay"
CHANNEL_CALL = "channel_call"
CALLBACK = "callback"
REFUND = "refund"
LEDGER_POSTING = "ledger_posting"
NOTIFICATION = "notification"
STEPS = (TRADE_CREATE, PAY, CHANNEL_CALL, CALLBACK, REFUND, LEDGER_POSTING, NOTIFICATION)

#: ok: done; error: failed on our side or a dependency's; rejected: refused for a
#: business reason (4xx); timeout: no answer in time; pending: accepted, result later.
LINK_OUTCOMES = ("ok", "error", "rejected", "timeout", "pending")
#: what :class:`stability.guard.Guard` reports (anything else is counted as "other").
GUARD_OUTCOMES = (
    "pass",
    "error",
    "timeout",
    "blocked",
    "degraded",
    "fallback",
    "breaker_open",
    "dry_run_blocked",
    "bulkhead_full",
)
#: breaker state -> gauge value
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3, "forced_closed": 4}
#: states in which a breaker keeps calls from its dependency (all or all but probes)
TRIPPED_STATES = frozenset({"open", "half_open", "forced_open"})
#: 1 ms .. 10 s, roughly 1-2.5-5 per decade: bucket error stays below ~60 % of a value
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_STEP_SET = frozenset(STEPS)
_OUTCOME_SET = frozenset(LINK_OUTCOMES)


def error_reason(exc: BaseException) -> str:
    """A bounded reason for an exception: its ``code`` attribute when that is a short
    code (the pay core's and the guard's errors have one), else its class name."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and is_short_code(code):
        return code
    return type(exc).__name__


class Timed:
    """Context manager from :meth:`CoreMetrics.timed`: times the block and records it.

    Inside the block ``outcome``/``reason`` may be set (e.g. ``"pending"`` for an
    asynchronous channel call); an exception makes it ``error`` (or ``rejected`` for
    a business refusal) with the reason from :func:`error_reason`.
    """

    __slots__ = ("_metrics", "_t0", "outcome", "pay_org", "reason", "step")

    def __init__(self, metrics: CoreMetrics, step: str, pay_org: str) -> None:
        self._metrics = metrics
        self.step = step
        self.pay_org = pay_org
        self.outcome = "ok"
        self.reason = ""
        self._t0 = 0.0

    def __enter__(self) -> Timed:
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._t0
        outcome, reason = self.outcome, self.reason
        if exc is not None:
            outcome = "rejected" if self._metrics.is_rejection(exc) else "error"
            reason = error_reason(exc)
        self._metrics.observe(self.step, outcome, reason, self.pay_org, seconds=seconds)


class CoreMetrics:
    """The pay link's metrics on ``registry``.

    Also a guard recorder (``outcome``/``guard_outcome`` and ``breaker_changed``): pass
    the instance to :class:`stability.guard.Guard` in ``recorders``.
    ``business`` (optional) is the snapshot function behind the business gauges.
    ``rejected``: exception classes counted as business refusals; exceptions with an
    ``http_status`` below 500 count as refusals too.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        business: Callable[[], BusinessSnapshot] | None = None,
        business_ttl: float = 2.0,
        rejected: tuple[type[BaseException], ...] = (),
        max_pay_orgs: int = 64,
        max_reasons: int = 128,
        max_resources: int = 128,
    ) -> None:
        self.registry = registry
        self.rejected = rejected
        self.label_overflow = Counter(
            "paywatch_label_overflow",
            "Label values replaced by 'other' (ids or too many)",
            ["label"],
            registry=registry,
        )
        self.link_requests = Counter(
            "paywatch_link_requests",
            "Pay-link step executions by outcome and error reason",
            ["step", "outcome", "reason", "pay_org"],
            registry=registry,
        )
        self.link_latency = Histogram(
            "paywatch_link_latency_seconds",
            "Pay-link step latency",
            ["step", "pay_org"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.guard_outcomes = Counter(
            "paywatch_guard_outcomes",
            "Guarded dependency calls by outcome",
            ["resource", "outcome"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "paywatch_breaker_state",
            "Circuit breaker state: 0 closed, 1 half_open, 2 open, 3 forced_open, 4 forced_closed",
            ["resource"],
            registry=registry,
        )
        self.breaker_tripped = Gauge(
            "paywatch_breaker_tripped",
            "1 while the breaker keeps calls away (open, half_open, forced_open), else 0: a "
            "breaker cycling open <-> half_open on a dead dependency stays 1",
            ["resource"],
            registry=registry,
        )
        self.limit_dry_run = Counter(
            "paywatch_limit_dry_run_blocked",
            "Calls a limit rule in dry run would have refused, by rule",
            ["rule"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "paywatch_breaker_transitions",
            "Circuit breaker state changes, by new state",
            ["resource", "state"],
            registry=registry,
        )
        self.shadow_requests = Counter(
            "paywatch_shadow_requests",
            "Shadow (test) traffic, kept out of the link metrics",
            ["step"],
            registry=registry,
        )
        overflow = self._overflow
        self._pay_org = BoundedLabel("pay_org", max_pay_orgs, on_overflow=overflow)
        self._reason = BoundedLabel("reason", max_reasons, on_overflow=overflow)
        self._resource = BoundedLabel("resource", max_resources, on_overflow=overflow)
        self._rule = BoundedLabel("rule", max_resources, on_overflow=overflow)
        self._guard_outcome = BoundedLabel(
            "guard_outcome",
            len(GUARD_OUTCOMES),
            allowed=frozenset(GUARD_OUTCOMES),
            on_overflow=overflow,
        )
        self.edges = EdgeMetrics(
            registry,
            resource=self._resource,
            outcome=self._guard_outcome,
            pay_org=self._pay_org,
            buckets=LATENCY_BUCKETS,
            on_overflow=overflow,
        )
        # label tuple -> child: skips prometheus_client's per-call label validation
        self._req_children: dict[tuple[str, str, str, str], Counter] = {}
        self._lat_children: dict[tuple[str, str], Histogram] = {}
        self._guard_children: dict[tuple[str, str], Counter] = {}
        # Zero-initialised main series: a rate needs a sample from before the first
        # event, or the first burst after start-up is lost (the same in Prometheus).
        for step in STEPS:
            self._req_child((step, "ok", "", ""))
            self._lat_child(step, "")
        self.business: BusinessCollector | None = None
        if business is not None:
            self.business = BusinessCollector(business, ttl=business_ttl)
            registry.register(self.business)

    # -- link steps ------------------------------------------------------------------------
    def observe(
        self, step: str, outcome: str, reason: str = "", pay_org: str = "", *, seconds: float
    ) -> None:
        """Count one execution of ``step`` and observe its latency."""
        key = (step, outcome, reason, pay_org)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_child(key)
        child.inc()
        lat = self._lat_children.get((step, pay_org))
        if lat is None:
            lat = self._lat_child(step, pay_org)
        lat.observe(seconds)

    def timed(self, step: str, pay_org: str = "") -> Timed:
        """``with metrics.timed("pay"): ...`` records outcome, reason and latency."""
        if step not in _STEP_SET:
            raise LabelError(f"unknown step {step!r}; one of {STEPS}")
        return Timed(self, step, pay_org)

    def shadow(self, step: str) -> None:
        """Count one shadow request (test traffic is kept out of the link metrics)."""
        if step not in _STEP_SET:
            raise LabelError(f"unknown step {step!r}; one of {STEPS}")
        self.shadow_requests.labels(step).inc()

    def is_rejection(self, exc: BaseException) -> bool:
        """A business refusal rather than a failure (counts apart in success ratios)."""
        if self.rejected and isinstance(exc, self.rejected):
            return True
        status = getattr(exc, "http_status", None)
        return isinstance(status, int) and 400 <= status < 500

    def _req_child(self, key: tuple[str, str, str, str]) -> Counter:
        step, outcome, reason, pay_org = key
        if step not in _STEP_SET:
            raise LabelError(f"unknown step {step!r}; one of {STEPS}")
        if outcome not in _OUTCOME_SET:
            raise LabelError(f"unknown outcome {outcome!r}; one of {LINK_OUTCOMES}")
        bounded = (step, outcome, self._reason(reason), self._pay_org(pay_org))
        child = self.link_requests.labels(*bounded)
        if bounded == key:  # cache only admitted values: ids must not pile up here
            self._req_children[key] = child
        return child

    def _lat_child(self, step: str, pay_org: str) -> Histogram:
        if step not in _STEP_SET:
            raise LabelError(f"unknown step {step!r}; one of {STEPS}")
        bounded_org = self._pay_org(pay_org)
        child = self.link_latency.labels(step, bounded_org)
        if bounded_org == pay_org:
            self._lat_children[(step, pay_org)] = child
        return child

    def _overflow(self, label: str) -> None:
        self.label_overflow.labels(label).inc()

    # -- guard recorder (stability.guard.Recorder) ----------------------------------------
    def guard_outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        """One guard decision on ``resource``: ``paywatch_guard_outcomes`` per resource, and
        per edge (``caller`` a label, bounded by the map) in :attr:`edges`."""
        self.edges.outcome(resource, caller, outcome, duration_s)
        child = self._guard_children.get((resource, outcome))
        if child is None:
            bounded = (self._resource(resource), self._guard_outcome(outcome))
            child = self.guard_outcomes.labels(*bounded)
            if bounded == (resource, outcome):
                self._guard_children[bounded] = child
        child.inc()

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        """Alias of :meth:`guard_outcome`: the name ``stability.guard.Recorder`` calls."""
        self.guard_outcome(resource, caller, outcome, duration_s)

    def limit_dry_run_blocked(self, rule: str) -> None:
        """One call the limit ``rule`` (in dry run) would have refused."""
        self.limit_dry_run.labels(self._rule(rule)).inc()

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        """A breaker moved from ``old`` to ``new`` (``reason`` is free text: not a label)."""
        value = BREAKER_STATES.get(new)
        res = self._resource(resource)
        self.breaker_transitions.labels(res, new if value is not None else OTHER).inc()
        if value is not None:
            self.breaker_state.labels(res).set(value)
            self.breaker_tripped.labels(res).set(1.0 if new in TRIPPED_STATES else 0.0)

    def set_breaker_state(self, resource: str, state: str) -> None:
        """Publish a breaker's current state (at start-up, before any change)."""
        value = BREAKER_STATES.get(state)
        if value is None:
            raise LabelError(f"unknown breaker state {state!r}; one of {tuple(BREAKER_STATES)}")
        res = self._resource(resource)
        self.breaker_state.labels(res).set(value)
        self.breaker_tripped.labels(res).set(1.0 if state in TRIPPED_STATES else 0.0)
