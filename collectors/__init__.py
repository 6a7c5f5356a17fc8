"""collectors: core-link metrics, ``/metrics``, a time-series store and its queries.

Nothing is created at import time: every metric lives on the
:class:`~prometheus_client.CollectorRegistry` handed to :class:`CoreMetrics`, the
store and the sampler are built over an engine and a registry passed in. This package
imports nothing else of paywatch (DESIGN.md §1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .business import BusinessCollector, BusinessSnapshot
from .errors import CollectorsError, LabelError, QueryError, StoreError
from .exposition import make_metrics_app, metrics_response, start_metrics_server
from .histogram import bucket_quantile
from .metrics import (
    BREAKER_STATES,
    CALLBACK,
    CHANNEL_CALL,
    GUARD_OUTCOMES,
    LATENCY_BUCKETS,
    LEDGER_POSTING,
    LINK_OUTCOMES,
    NOTIFICATION,
    PAY,
    REFUND,
    STEPS,
    TRADE_CREATE,
    CoreMetrics,
    error_reason,
)
from .prom import PrometheusQuery
from .query import MetricsQuery, Series
from .sampler import Sampler
from .store import TimeSeriesStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "BREAKER_STATES",
    "CALLBACK",
    "CHANNEL_CALL",
    "GUARD_OUTCOMES",
    "LATENCY_BUCKETS",
    "LEDGER_POSTING",
    "LINK_OUTCOMES",
    "NOTIFICATION",
    "PAY",
    "REFUND",
    "STEPS",
    "TRADE_CREATE",
    "BusinessCollector",
    "BusinessSnapshot",
    "CollectorsError",
    "CoreMetrics",
    "LabelError",
    "MetricsQuery",
    "PrometheusQuery",
    "QueryError",
    "Sampler",
    "Series",
    "StoreError",
    "TimeSeriesStore",
    "bucket_quantile",
    "error_reason",
    "make_metrics_app",
    "make_query",
    "metrics_response",
    "start_metrics_server",
]


def make_query(
    prometheus_url: str | None, engine: Engine | None, *, sample_interval: float = 5.0
) -> MetricsQuery:
    """Prometheus' HTTP API when ``prometheus_url`` is set (``PAYWATCH_PROMETHEUS_URL``),
    else the database store over ``engine``."""
    if prometheus_url:
        return PrometheusQuery(prometheus_url)
    if engine is None:
        raise CollectorsError("make_query needs an engine when no Prometheus URL is set")
    return TimeSeriesStore(engine, sample_interval=sample_interval)
