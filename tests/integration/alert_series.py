"""What the alert-engine tests share: synthetic series and a recording notifier.

``FakeQuery`` is a test double of the metrics *input* (the collectors' MetricsQuery):
counters and gauges are functions of time, so every window is exact and every
expected firing time can be computed by hand (the arithmetic is in the tests' docstrings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from alerts import AlertEngine, Delivery, Notification, Notifier
from collectors.query import MetricsQuery, Series

T0 = 1_700_000_000.0  # errors start here in the burn-rate scenarios
Fn = Callable[[float], float]


class _Line:
    def __init__(
        self, name: str, labels: dict[str, str], fn: Fn, since: float | None, until: float | None
    ) -> None:
        self.name, self.labels, self.fn, self.since, self.until = name, labels, fn, since, until

    def matches(self, name: str, match: Mapping[str, str] | None) -> bool:
        return self.name == name and all(self.labels.get(k) == v for k, v in (match or {}).items())

    def increase(self, at: float, window: float) -> float | None:
        """Increase over (at - window, at], only where the series has samples."""
        start, end = at - window, at
        if self.until is not None:
            end = min(end, self.until)
        if self.since is not None:
            start = max(start, self.since)
        if end <= start:
            return None
        return self.fn(end) - self.fn(start)


class FakeQuery(MetricsQuery):
    """In-memory MetricsQuery over synthetic series (counters, gauges, quantiles)."""

    def __init__(self) -> None:
        self.counters: list[_Line] = []
        self.gauges: list[_Line] = []
        self.quantiles: list[_Line] = []
        self.fail = False

    def counter(
        self,
        name: str,
        labels: dict[str, str],
        fn: Fn,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        self.counters.append(_Line(name, labels, fn, since, until))

    def gauge(
        self,
        name: str,
        labels: dict[str, str],
        fn: Fn,
        *,
        until: float | None = None,
    ) -> None:
        self.gauges.append(_Line(name, labels, fn, None, until))

    def set_quantile(self, histogram: str, labels: dict[str, str], fn: Fn) -> None:
        self.quantiles.append(_Line(histogram, labels, fn, None, None))

    @staticmethod
    def _group(labels: Mapping[str, str], by: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(labels.get(b, "") for b in by)

    def _increases(self, metric, window, at, match, by) -> dict[tuple[str, ...], float]:
        if self.fail:
            raise ConnectionError("metrics backend down")
        out: dict[tuple[str, ...], float] = {}
        for line in self.counters:
            if line.matches(metric, match):
                inc = line.increase(at, window)
                if inc is not None:
                    key = self._group(line.labels, by)
                    out[key] = out.get(key, 0.0) + inc
        return out

    def rate(self, metric, *, window, at, match=None, by=()):
        incs = self._increases(metric, window, at, match, by)
        return [Series(dict(zip(by, k, strict=True)), v / window) for k, v in incs.items()]

    def count(self, metric, *, window, at, match=None, by=()):
        incs = self._increases(metric, window, at, match, by)
        return [Series(dict(zip(by, k, strict=True)), v) for k, v in incs.items()]

    def ratio(self, numerator, denominator, *, window, at, match_num=None, match_den=None, by=()):
        num = self._increases(numerator, window, at, match_num, by)
        den = self._increases(denominator, window, at, match_den, by)
        return [
            Series(dict(zip(by, k, strict=True)), num.get(k, 0.0) / d if d > 0 else None)
            for k, d in den.items()
        ]

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        return [
            Series({b: line.labels.get(b, "") for b in by}, line.fn(at))
            for line in self.quantiles
            if line.matches(histogram, match)
        ]

    def latest(self, metric, *, at, match=None, by=(), max_age=300.0, agg="sum"):
        from collectors.query import check_agg

        if self.fail:
            raise ConnectionError("metrics backend down")
        out: dict[tuple[str, ...], list[float]] = {}
        for line in self.gauges:
            if line.matches(metric, match) and (line.until is None or at - line.until <= max_age):
                key = self._group(line.labels, by)
                out.setdefault(key, []).append(line.fn(min(at, line.until or at)))
        return [Series(dict(zip(by, k, strict=True)), check_agg(agg)(v)) for k, v in out.items()]

    def range(self, metric_kind, metric, *, start, end, step, match=None, by=(), window=300.0):
        raise NotImplementedError


class RecordingNotifier(Notifier):
    """Accepts everything and remembers it."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, notification: Notification) -> list[Delivery]:
        self.sent.append(notification)
        return [Delivery("recorder", "sent", 1, "", "{}")]


def pay_traffic(q: FakeQuery, errors: Fn, rps: float = 10.0, step: str = "pay") -> None:
    """``rps`` requests/s on ``step``; ``errors(t)`` of them (cumulative) failed."""
    m = "paywatch_link_requests_total"
    q.counter(m, {"step": step, "outcome": "ok", "pay_org": "A"}, lambda t: rps * t - errors(t))
    q.counter(m, {"step": step, "outcome": "error", "pay_org": "A"}, errors)


def ramp(start: float, per_s: float, stop: float | None = None) -> Fn:
    """Cumulative errors: ``per_s`` errors/s from ``start`` until ``stop``."""
    return lambda t: per_s * max(0.0, min(t, stop if stop is not None else t) - start)


def run(eng: AlertEngine, start: float, end: float, step: float) -> None:
    t = start
    while t <= end + 1e-9:
        eng.evaluate(now=t)
        t += step


def transitions(eng: AlertEngine, rule: str, severity: str | None = None) -> list[tuple]:
    return [
        (h.from_state, h.to_state, h.at - T0)
        for h in reversed(eng.history(limit=1000))
        if h.rule == rule and (severity is None or h.labels.get("severity") == severity)
    ]


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine
