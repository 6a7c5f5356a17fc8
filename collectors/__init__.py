"""collectors: core-link metrics, ``/metrics``, a time-series store and its queries.

Nothing is created at import time: every metric lives on the
:class:`~prometheus_client.CollectorRegistry` handed to :class:`CoreMetrics`, the
store and the sampler are built over an engine and a registry passed in. Importing the
package registers the metric stores with :mod:`backends` (kind ``metric store``:
``postgresql``/``sqlite`` URLs the database store, ``http(s)`` Prometheus). Of
paywatch it imports only :mod:`backends` (DESIGN.md §1).
"""

from __future__ import annotations

from .build_info import paywatch_version, register_process_metrics
from .business import BusinessCollector, BusinessSnapshot
from .edge_metrics import (
    BULKHEAD_IN_FLIGHT,
    BULKHEAD_LIMIT,
    EDGE_CALLS,
    EDGE_LATENCY,
    FRONT_IN_FLIGHT,
    FRONT_REFUSED,
    EdgeMetrics,
)
from .errors import CollectorsError, LabelError, QueryBackendError, QueryError, StoreError
from .exposition import make_metrics_app, metrics_response, start_metrics_server
from .histogram import bucket_quantile
from .http_metrics import HttpMetrics, HttpMetricsMiddleware, http_metrics_for
from .job_metrics import AlertEngineMetrics, JobMetrics
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
from .stores import make_query, prometheus_metric_store, sql_metric_store

__all__ = [
    "BREAKER_STATES",
    "BULKHEAD_IN_FLIGHT",
    "BULKHEAD_LIMIT",
    "EDGE_CALLS",
    "EDGE_LATENCY",
    "FRONT_IN_FLIGHT",
    "FRONT_REFUSED",
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
    "AlertEngineMetrics",
    "BusinessCollector",
    "BusinessSnapshot",
    "CollectorsError",
    "CoreMetrics",
    "EdgeMetrics",
    "HttpMetrics",
    "HttpMetricsMiddleware",
    "JobMetrics",
    "LabelError",
    "MetricsQuery",
    "PrometheusQuery",
    "QueryBackendError",
    "QueryError",
    "Sampler",
    "Series",
    "StoreError",
    "TimeSeriesStore",
    "bucket_quantile",
    "error_reason",
    "http_metrics_for",
    "make_metrics_app",
    "make_query",
    "metrics_response",
    "paywatch_version",
    "prometheus_metric_store",
    "register_process_metrics",
    "sql_metric_store",
    "start_metrics_server",
]
