"""The metric stores chosen by URL (kind ``metric store`` of :mod:`backends`): the
database store for SQL URLs, Prometheus' HTTP API for ``http(s)://`` ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from backends.registry import METRIC_STORE, from_url, register

from .errors import CollectorsError
from .prom import PrometheusQuery
from .query import MetricsQuery
from .store import TimeSeriesStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["make_query", "prometheus_metric_store", "sql_metric_store"]


@register(METRIC_STORE, "postgresql", "sqlite")
def sql_metric_store(url: str, *, engine: Engine | None = None, **options: Any) -> TimeSeriesStore:
    """The database store for a SQL ``url``: over ``engine`` (the process's, handed in),
    else over an engine of its own for ``url``. ``options`` go to :class:`TimeSeriesStore`."""
    if engine is None:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return TimeSeriesStore(engine, **options)


@register(METRIC_STORE, "http", "https")
def prometheus_metric_store(
    url: str,
    *,
    client: Any = None,
    engine: Engine | None = None,
    sample_interval: float | None = None,
) -> PrometheusQuery:
    """Prometheus' HTTP API at ``url`` (``client=`` a :class:`backends.http.JsonHttp`
    to send through). The database store's options (``engine``, ``sample_interval``) do
    not apply and are ignored, so one call serves either store."""
    del engine, sample_interval
    return PrometheusQuery(url, client=client)


def make_query(
    prometheus_url: str | None, engine: Engine | None, *, sample_interval: float = 5.0
) -> MetricsQuery:
    """Prometheus' HTTP API when ``prometheus_url`` is set (``PAYWATCH_PROMETHEUS_URL``),
    else the database store over ``engine``."""
    if prometheus_url:
        url = prometheus_url
    elif engine is not None:
        url = engine.url.render_as_string()  # the password hidden: only the scheme counts
    else:
        raise CollectorsError("make_query needs an engine when no Prometheus URL is set")
    query: MetricsQuery = from_url(
        METRIC_STORE, url, engine=engine, sample_interval=sample_interval
    )
    return query
