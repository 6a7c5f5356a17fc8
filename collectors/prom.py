"""The metrics query interface over Prometheus' HTTP API (``PAYWATCH_PROMETHEUS_URL``).

Each method builds the PromQL that means what the database store computes:

* rate     ``sum by (g) (rate(m{match}[w]))``
* ratio    ``(sum by (g) (increase(n[w])) or 0 * D) / D`` with ``D = sum by (g)
  (increase(d[w]))`` (a group without numerator increase is 0, without denominator
  increase None)
* quantile ``histogram_quantile(q, sum by (le, g) (rate(h_bucket{match}[w])))``
* latest   ``sum by (g) (last_over_time(m{match}[max_age]))``

Prometheus extrapolates ``rate``/``increase`` to the window's edges, the store does not,
so the two agree within a scrape interval's worth of the window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from backends.errors import DriverErrors, HttpUnavailable
from backends.http import JsonHttp

from .errors import QueryBackendError, QueryError
from .query import Labels, MetricsQuery, Series, check_agg
from .store_eval import points

__all__ = ["PrometheusQuery", "promql_selector"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PCT = re.compile(r"p(\d{2,4})")
Key = tuple[tuple[str, str], ...]
#: no answer (HttpUnavailable), or not JSON (ValueError), from Prometheus
_FAILED = DriverErrors(
    lambda exc: QueryBackendError(f"Prometheus query failed: {type(exc).__name__}"),
    catch=(ValueError,),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def promql_selector(metric: str, match: Labels | None = None) -> str:
    """``metric{k="v",...}`` with names checked and values escaped."""
    if not _NAME.fullmatch(metric):
        raise QueryError(f"not a metric name: {metric!r}")
    if not match:
        return metric
    pairs = []
    for key, value in sorted(match.items()):
        if not _LABEL.fullmatch(key):
            raise QueryError(f"not a label name: {key!r}")
        pairs.append(f'{key}="{_escape(str(value))}"')
    return metric + "{" + ",".join(pairs) + "}"


def _duration(seconds: float) -> str:
    if seconds <= 0:
        raise QueryError("window must be positive")
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _sum(by: tuple[str, ...], expr: str, agg: str = "sum") -> str:
    for key in by:
        if not _LABEL.fullmatch(key):
            raise QueryError(f"not a label name: {key!r}")
    return f"{agg} by ({', '.join(by)}) ({expr})" if by else f"{agg}({expr})"


def _value(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


class PrometheusQuery(MetricsQuery):
    """:class:`MetricsQuery` answered by a Prometheus server at ``url``.

    ``client`` is a :class:`backends.http.JsonHttp` to send through (not closed here);
    without one, one with ``timeout`` and ``headers`` is made and :meth:`close` closes
    it."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        client: JsonHttp | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._own = client is None
        self.client = client or JsonHttp(timeout=timeout, headers=headers)

    def close(self) -> None:
        if self._own:
            self.client.close()

    # -- HTTP --------------------------------------------------------------------------------
    def _call(self, path: str, params: dict[str, Any]) -> Any:
        try:
            with _FAILED:
                resp = self.client.post(f"{self.url}{path}", form=params)
                body = resp.json()
        except HttpUnavailable as exc:
            raise QueryBackendError(f"Prometheus query failed: {exc}") from exc
        if resp.status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            body = body if isinstance(body, dict) else {}
            raise QueryError(
                f"Prometheus answered {resp.status}: "
                f"{body.get('errorType', '')} {body.get('error', '')}".strip()
            )
        return body["data"]

    def query(self, promql: str, at: float) -> list[tuple[dict[str, str], float | None]]:
        """An instant query: ``[(labels, value)]``."""
        data = self._call("/api/v1/query", {"query": promql, "time": repr(float(at))})
        if data.get("resultType") == "scalar":
            return [({}, _value(data["result"][1]))]
        return [(r["metric"], _value(r["value"][1])) for r in data["result"]]

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float | None]]]]:
        """A range query: ``[(labels, [(t, value)])]``."""
        params = {
            "query": promql,
            "start": repr(float(start)),
            "end": repr(float(end)),
            "step": repr(float(step)),
        }
        data = self._call("/api/v1/query_range", params)
        return [
            (r["metric"], [(float(t), _value(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    # -- MetricsQuery ------------------------------------------------------------------------
    def _vector(self, promql: str, at: float, by: tuple[str, ...]) -> list[Series]:
        rows = [(tuple(m.get(k, "") for k in by), v) for m, v in self.query(promql, at)]
        return [Series(dict(zip(by, k, strict=True)), v) for k, v in sorted(rows)]

    def rate_expr(
        self, metric: str, window: float, match: Labels | None, by: tuple[str, ...]
    ) -> str:
        return _sum(by, f"rate({promql_selector(metric, match)}[{_duration(window)}])")

    def quantile_expr(
        self, q: float, histogram: str, window: float, match: Labels | None, by: tuple[str, ...]
    ) -> str:
        if not 0.0 <= q <= 1.0:
            raise QueryError(f"quantile must be in [0, 1], not {q}")
        sel = promql_selector(f"{histogram}_bucket", match)
        return (
            f"histogram_quantile({q!r}, {_sum(('le', *by), f'rate({sel}[{_duration(window)}])')})"
        )

    def latest_expr(
        self,
        metric: str,
        max_age: float,
        match: Labels | None,
        by: tuple[str, ...],
        agg: str = "sum",
    ) -> str:
        check_agg(agg)
        inner = f"last_over_time({promql_selector(metric, match)}[{_duration(max_age)}])"
        return _sum(by, inner, agg)

    def rate(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        return self._vector(self.rate_expr(metric, window, match, by), at, by)

    def count(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        expr = _sum(by, f"increase({promql_selector(metric, match)}[{_duration(window)}])")
        return self._vector(expr, at, by)

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
        w = _duration(window)
        num = _sum(by, f"increase({promql_selector(numerator, match_num)}[{w}])")
        den = _sum(by, f"increase({promql_selector(denominator, match_den)}[{w}])")
        return self._vector(f"(({num}) or (0 * {den})) / ({den})", at, by)

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
        return self._vector(self.quantile_expr(q, histogram, window, match, by), at, by)

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
        return self._vector(self.latest_expr(metric, max_age, match, by, agg), at, by)

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
    ) -> dict[Key, list[tuple[float, float | None]]]:
        if step <= 0 or end < start or window <= 0:
            raise QueryError("range needs step > 0, end >= start and window > 0")
        win = max(window, step)
        if metric_kind == "rate":
            expr = self.rate_expr(metric, win, match, by)
        elif metric_kind == "latest":
            expr = self.latest_expr(metric, win, match, by)
        elif m := _PCT.fullmatch(metric_kind):
            expr = self.quantile_expr(float("0." + m[1]), metric, win, match, by)
        else:
            raise QueryError(f"unknown range kind {metric_kind!r}: rate, latest or pNN")
        grid = points(start, end, step)
        out: dict[Key, list[tuple[float, float | None]]] = {}
        for labels, values in self.query_range(expr, start, end, step):
            key = tuple(sorted((k, labels.get(k, "")) for k in by))
            line: list[float | None] = [None] * len(grid)
            for t, v in values:
                i = round((t - start) / step)
                if 0 <= i < len(grid):
                    line[i] = v
            out[key] = list(zip(grid, line, strict=True))
        return dict(sorted(out.items()))
