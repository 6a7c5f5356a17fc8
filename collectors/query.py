"""The query interface the console and the alert engine read metrics through.

Two implementations share it: the database time-series store
(:mod:`collectors.store`) and Prometheus' HTTP API (:mod:`collectors.prom`), chosen
by whether ``PAYWATCH_PROMETHEUS_URL`` is set. Times are epoch seconds; every method
takes ``at`` (the evaluation time, injectable) and a ``window`` in seconds.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import QueryError

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Series:
    """One result row: the group's label values and the value (None = no data)."""

    labels: dict[str, str] = field(default_factory=dict)
    value: float | None = None


AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "min": min,
    "avg": lambda v: math.fsum(v) / len(v),
}


def check_agg(agg: str) -> Callable[[list[float]], float]:
    """The reducer of an aggregation name (:class:`QueryError` for an unknown one)."""
    try:
        return AGGREGATIONS[agg]
    except KeyError:
        raise QueryError(f"agg must be one of {', '.join(AGGREGATIONS)}, not {agg!r}") from None


class MetricsQuery(ABC):
    """Read-side of the metrics: rates, ratios and quantiles over a window."""

    @abstractmethod
    def rate(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        """Per-second increase of counter ``metric`` over ``window`` before ``at``,
        summed per group of the ``by`` labels, over series matching ``match``."""

    @abstractmethod
    def count(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        """How much counter ``metric`` went up over ``window`` before ``at`` (events, not
        a rate), per group: what reports count with (the SLA report). Both implementations
        answer from the increase itself (the store: stitched and exact to the sample;
        Prometheus: ``increase()``), never from rate x window, which over-counts a series
        younger than the window."""

    @abstractmethod
    def ratio(
        self,
        numerator: str,
        denominator: str,
        *,
        window: float,
        at: float,
        match_num: Labels | None = None,
        match_den: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        """increase(numerator) / increase(denominator) per group (e.g. success ratio);
        value None when the denominator did not increase (no traffic)."""

    @abstractmethod
    def quantile(
        self,
        q: float,
        histogram: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        """The q-quantile of histogram ``histogram`` (its ``_bucket`` series) over the
        window, linearly interpolated within the bucket as Prometheus does."""

    @abstractmethod
    def latest(
        self,
        metric: str,
        *,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
        max_age: float = 300.0,
        agg: str = "sum",
    ) -> list[Series]:
        """The newest value of a gauge per series, if not older than max_age, aggregated per
        group with ``agg`` (``sum``, ``max``, ``min``, ``avg``): ``max`` for a figure every
        replica exports alike (a backlog read from the database), ``sum`` for a per-process
        share of a whole."""

    @abstractmethod
    def range(
        self,
        metric_kind: str,
        metric: str,
        *,
        start: float,
        end: float,
        step: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
        window: float = 300.0,
    ) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float | None]]]:
        """A time series for charts: ``metric_kind`` is "rate", "latest" or "p99";
        returns {sorted label items: [(t, value), ...]} at ``step`` resolution."""
