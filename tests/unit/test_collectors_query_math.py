"""Prometheus-equivalent math of the store (histogram_quantile) and the PromQL that
PrometheusQuery sends, checked against a fake Prometheus HTTP API served on a local
port."""

from __future__ import annotations

import math
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
from conftest import LiveServer, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from collectors import PrometheusQuery, QueryBackendError, QueryError, bucket_quantile, make_query
from collectors.prom import promql_selector

INF = math.inf


# -- histogram_quantile ----------------------------------------------------------------------
def test_quantile_interpolates_linearly_inside_the_bucket():
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.5, 40.0), (INF, 40.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.15)  # rank 20: half of (0.1, 0.2]
    assert bucket_quantile(0.25, buckets) == pytest.approx(0.1)
    assert bucket_quantile(0.1, buckets) == pytest.approx(0.04)  # first bucket from 0
    assert bucket_quantile(0.9, buckets) == pytest.approx(0.38)  # 0.2 + 0.3 * 6/10


def test_quantile_edge_cases_follow_prometheus():
    assert bucket_quantile(0.99, [(0.1, 1.0), (INF, 10.0)]) == 0.1  # in +Inf: largest bound
    assert bucket_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None  # no observations
    assert bucket_quantile(0.5, [(0.1, 1.0), (0.2, 2.0)]) is None  # no +Inf bucket
    assert bucket_quantile(0.5, [(INF, 2.0)]) is None  # fewer than two buckets
    assert bucket_quantile(-0.1, [(0.1, 1.0), (INF, 1.0)]) == -INF
    assert bucket_quantile(1.1, [(0.1, 1.0), (INF, 1.0)]) == INF
    # non-monotonic counts (rates read at slightly different instants) are forced up
    assert bucket_quantile(0.5, [(0.1, 5.0), (0.2, 4.0), (INF, 10.0)]) == 0.1
    # order does not matter and duplicate bounds add up
    shuffled = [(INF, 4.0), (0.2, 4.0), (0.1, 1.0), (0.1, 1.0)]
    assert bucket_quantile(0.5, shuffled) == bucket_quantile(
        0.5, [(0.1, 2.0), (0.2, 4.0), (INF, 4.0)]
    )
    assert bucket_quantile(0.5, shuffled) == pytest.approx(0.1)


# -- PromQL ------------------------------------------------------------------------------------
class FakePrometheus:
    def __init__(
        self, result: list | None = None, status: int = 200, body: dict | str | None = None
    ):
        self.queries: list[dict[str, list[str]]] = []
        self.paths: list[str] = []
        self.result = result or []
        self.status = status
        self.body = body

    def answer(self, path: str, form: dict[str, list[str]]) -> Response:
        self.paths.append(path)
        self.queries.append(form)
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, self.status)
        if self.body is not None:
            return JSONResponse(self.body, self.status)
        kind = "matrix" if path.endswith("query_range") else "vector"
        data = {"resultType": kind, "result": self.result}
        return JSONResponse({"status": "success", "data": data}, self.status)


_serving: dict[str, FakePrometheus] = {}


async def _endpoint(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())
    return _serving["fake"].answer(request.url.path, form)


@pytest.fixture(scope="module", autouse=True)
def prometheus_url() -> Iterator[str]:
    """One local server for the module; it answers as the fake last given to client_for."""
    app = Starlette(routes=[Route("/api/v1/{kind}", _endpoint, methods=["POST"])])
    with LiveServer(app) as server:
        _serving["url"] = server.url  # type: ignore[assignment]
        yield server.url
    _serving.clear()


def client_for(fake: FakePrometheus) -> PrometheusQuery:
    _serving["fake"] = fake
    return PrometheusQuery(f"{_serving['url']}/")


def test_selectors_escape_values_and_refuse_bad_names():
    assert promql_selector("m") == "m"
    assert promql_selector("m", {"b": "x", "a": 'q"\\'}) == 'm{a="q\\"\\\\",b="x"}'
    with pytest.raises(QueryError):
        promql_selector("bad-name")
    with pytest.raises(QueryError):
        promql_selector("m", {"bad-label": "x"})


def test_rate_ratio_quantile_latest_build_the_documented_promql():
    fake = FakePrometheus([{"metric": {"step": "pay"}, "value": [100, "2.5"]}])
    q = client_for(fake)
    rows = q.rate(
        "paywatch_link_requests_total",
        window=300,
        at=100,
        match={"step": "pay"},
        by=("step", "pay_org"),
    )
    assert rows[0].labels == {"step": "pay", "pay_org": ""} and rows[0].value == 2.5
    sent = fake.queries[-1]
    assert sent["query"] == [
        'sum by (step, pay_org) (rate(paywatch_link_requests_total{step="pay"}[300s]))'
    ]
    assert sent["time"] == ["100.0"] and fake.paths[-1] == "/api/v1/query"
    q.ratio("n_total", "d_total", window=60.5, at=1, match_num={"outcome": "ok"}, by=("step",))
    den = "sum by (step) (increase(d_total[60500ms]))"
    assert fake.queries[-1]["query"] == [
        f'((sum by (step) (increase(n_total{{outcome="ok"}}[60500ms]))) or (0 * {den})) / ({den})'
    ]
    q.quantile(0.99, "lat_seconds", window=60, at=1)
    assert fake.queries[-1]["query"] == [
        "histogram_quantile(0.99, sum by (le) (rate(lat_seconds_bucket[60s])))"
    ]
    q.latest("g", at=1, max_age=120)
    assert fake.queries[-1]["query"] == ["sum(last_over_time(g[120s]))"]
    with pytest.raises(QueryError):
        q.quantile(1.5, "lat_seconds", window=60, at=1)


def test_nan_and_inf_are_no_data():
    fake = FakePrometheus(
        [{"metric": {}, "value": [1, "NaN"]}, {"metric": {"a": "x"}, "value": [1, "+Inf"]}]
    )
    rows = client_for(fake).ratio("a", "b", window=60, at=1, by=("a",))
    assert [r.value for r in rows] == [None, None]


def test_range_fills_the_point_grid():
    fake = FakePrometheus([{"metric": {"step": "pay"}, "values": [[0, "1"], [120, "3"]]}])
    out = client_for(fake).range("p99", "lat_seconds", start=0, end=120, step=60, by=("step",))
    assert out == {(("step", "pay"),): [(0.0, 1.0), (60.0, None), (120.0, 3.0)]}
    sent = fake.queries[-1]
    assert fake.paths[-1] == "/api/v1/query_range"
    assert sent["step"] == ["60.0"] and sent["start"] == ["0.0"] and sent["end"] == ["120.0"]
    assert sent["query"] == [
        "histogram_quantile(0.99, sum by (le, step) (rate(lat_seconds_bucket[300s])))"
    ]
    with pytest.raises(QueryError):
        client_for(fake).range("median", "m", start=0, end=1, step=1)


def test_errors_become_query_errors():
    bad = FakePrometheus(
        status=400, body={"status": "error", "errorType": "bad_data", "error": "parse error"}
    )
    with pytest.raises(QueryError, match="bad_data"):
        client_for(bad).rate("m", window=60, at=1)

    q = PrometheusQuery(f"http://127.0.0.1:{free_port()}")  # nothing listens: refused
    with pytest.raises(QueryBackendError, match="NewConnectionError"):
        q.rate("m", window=60, at=1)

    not_json = FakePrometheus(body="<html>")
    with pytest.raises(QueryBackendError, match="JSONDecodeError"):
        client_for(not_json).rate("m", window=60, at=1)


def test_make_query_picks_the_backend():
    import sqlalchemy as sa

    from collectors import TimeSeriesStore

    q = make_query("http://prom:9090", None)
    assert isinstance(q, PrometheusQuery)
    q.close()
    engine = sa.create_engine("sqlite://")
    assert isinstance(make_query(None, engine), TimeSeriesStore)
    assert isinstance(make_query("", engine), TimeSeriesStore)
