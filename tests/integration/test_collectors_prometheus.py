"""PrometheusQuery against a real Prometheus scraping a live /metrics, checked against the
database store sampling the same registry: rate, ratio, quantile, latest and range agree.

Skipped locally when the ``prometheus`` binary is absent; under ``CI=true`` that fails
(Debian package ``prometheus``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from itertools import cycle

import httpx
import pytest
import sqlalchemy as sa
from conftest import LiveServer, free_port
from prometheus_client import CollectorRegistry

from collectors import CoreMetrics, PrometheusQuery, Sampler, TimeSeriesStore, make_metrics_app
from collectors.schema import metadata

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REQ = "paywatch_link_requests_total"
LAT = "paywatch_link_latency_seconds"
LATENCIES = (0.002, 0.004, 0.008, 0.02, 0.03, 0.07, 0.2, 0.4, 0.8, 3.0)


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    exe = shutil.which("prometheus")
    if exe is None:
        if IN_CI:
            pytest.fail("prometheus not found (CI=true: install the Debian package 'prometheus')")
        pytest.skip("prometheus not found (Debian package 'prometheus')")
    return exe


class Traffic:
    """Steady pay traffic: every 20 ms 3 successes and 1 error, latencies from a cycle."""

    def __init__(self, m: CoreMetrics) -> None:
        self.m = m
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        lat = cycle(LATENCIES)
        while not self.stop.wait(0.02):
            for _ in range(3):
                self.m.observe("pay", "ok", "", "SANDBOX_A", seconds=next(lat))
            self.m.observe("pay", "error", "channel_timeout", "SANDBOX_A", seconds=next(lat))


@pytest.fixture
def live(tmp_path, prometheus_bin) -> Iterator[tuple[PrometheusQuery, TimeSeriesStore, dict]]:
    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    # every series exists before the first scrape/sample, as in a warmed-up process
    m.link_requests.labels("pay", "ok", "", "SANDBOX_A")
    m.link_requests.labels("pay", "error", "channel_timeout", "SANDBOX_A")
    m.link_latency.labels("pay", "SANDBOX_A")
    m.set_breaker_state("channel.SANDBOX_A", "half_open")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    metadata.create_all(engine)
    store = TimeSeriesStore(engine, sample_interval=1.0)
    sampler = Sampler(reg, store, interval=1.0)
    traffic = Traffic(m)
    port = free_port()
    with LiveServer(make_metrics_app(reg)) as server:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: paywatch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{server.port}']\n"
        )
        proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        prom = PrometheusQuery(url)
        try:
            wait_ready(url, proc)
            sampler.start()
            traffic.thread.start()
            yield prom, store, {"url": url, "metrics": m, "traffic": traffic}
        finally:
            traffic.stop.set()
            sampler.stop()
            prom.close()
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            engine.dispose()


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"prometheus exited {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("prometheus did not become ready")


def wait_scrapes(prom: PrometheusQuery, n: int, timeout: float = 60) -> None:
    """Until Prometheus holds ``n`` scrapes of the traffic (and the sampler as many)."""
    deadline = time.monotonic() + timeout
    query = f'count_over_time({REQ}{{step="pay",outcome="ok"}}[1m])'
    while time.monotonic() < deadline:
        rows = prom.query(query, time.time())
        if rows and (rows[0][1] or 0) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"prometheus did not scrape {n} times")


def close(a: float | None, b: float | None, rel: float) -> bool:
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b))


def test_prometheus_and_the_store_agree(live):
    prom, store, ctx = live
    wait_scrapes(prom, 12)
    at = time.time() - 1.5  # both have samples up to here
    window = 8.0
    match = {"step": "pay"}

    p_rate = prom.rate(REQ, window=window, at=at, match=match, by=("outcome",))
    s_rate = store.rate(REQ, window=window, at=at, match=match, by=("outcome",))
    assert (
        [r.labels for r in p_rate]
        == [r.labels for r in s_rate]
        == [
            {"outcome": "error"},
            {"outcome": "ok"},
        ]
    )
    for p, s in zip(p_rate, s_rate, strict=True):
        assert p.value and p.value > 10  # ~50/s and ~150/s on an idle machine
        assert close(p.value, s.value, 0.25), (p, s)

    p_count = prom.count(REQ, window=window, at=at, match=match, by=("outcome",))
    s_count = store.count(REQ, window=window, at=at, match=match, by=("outcome",))
    assert [r.labels for r in p_count] == [r.labels for r in s_count]
    for p, s in zip(p_count, s_count, strict=True):
        assert p.value and p.value > 80  # events in the window, not per second
        assert close(p.value, s.value, 0.25), (p, s)

    p_ratio = prom.ratio(
        REQ, REQ, window=window, at=at, match_num={"outcome": "ok"}, match_den=match, by=("step",)
    )
    s_ratio = store.ratio(
        REQ, REQ, window=window, at=at, match_num={"outcome": "ok"}, match_den=match, by=("step",)
    )
    assert [r.labels for r in p_ratio] == [r.labels for r in s_ratio] == [{"step": "pay"}]
    assert p_ratio[0].value == pytest.approx(0.75, abs=0.03)
    assert s_ratio[0].value == pytest.approx(0.75, abs=0.03)

    for q in (0.5, 0.85, 0.95):  # ranks away from the empty (1, 2.5] bucket's jump
        p_q = prom.quantile(q, LAT, window=window, at=at, match=match, by=("pay_org",))
        s_q = store.quantile(q, LAT, window=window, at=at, match=match, by=("pay_org",))
        assert [r.labels for r in p_q] == [r.labels for r in s_q]
        assert [r.labels for r in p_q] == [{"pay_org": ""}, {"pay_org": "SANDBOX_A"}]
        assert p_q[0].value is None and s_q[0].value is None  # the zero series: no traffic
        assert close(p_q[1].value, s_q[1].value, 0.15), (q, p_q, s_q)

    state = "paywatch_breaker_state"
    assert prom.latest(state, at=at, by=("resource",)) == store.latest(
        state, at=at, by=("resource",)
    )
    assert store.latest(state, at=at)[0].value == 1.0
    assert prom.latest(state, at=at, agg="max") == store.latest(state, at=at, agg="max")

    start, end = at - 6, at
    p_chart = prom.range("rate", REQ, start=start, end=end, step=2, match=match, window=4)
    s_chart = store.range("rate", REQ, start=start, end=end, step=2, match=match, window=4)
    assert list(p_chart) == list(s_chart) == [()]
    for (tp, vp), (ts, vs) in zip(p_chart[()], s_chart[()], strict=True):
        assert tp == ts and close(vp, vs, 0.3), (tp, vp, vs)


def test_prometheus_scrapes_the_pay_core_api(tmp_path, prometheus_bin, pg_url):
    """A real Prometheus scraping the API process's /metrics sees the pay link."""
    from api_stack import Stack

    with Stack(pg_url) as stack:
        for i in range(3):
            stack.trade(f"prom-{i}", 100)
        port = free_port()
        host = stack.api.url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: paywatch-api\n    static_configs:\n"
            f"      - targets: ['{host}']\n"
        )
        proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'db'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        prom = PrometheusQuery(url)
        try:
            wait_ready(url, proc)
            query = 'sum(paywatch_link_requests_total{step="trade_create",outcome="ok"})'
            deadline = time.monotonic() + 30
            value = None
            while time.monotonic() < deadline:
                rows = prom.query(query, time.time())
                value = rows[0][1] if rows else None
                if value == 3.0:
                    break
                time.sleep(0.5)
            assert value == 3.0
            up = prom.query('up{job="paywatch-api"}', time.time())
            assert up and up[0][1] == 1.0
        finally:
            prom.close()
            proc.terminate()
            proc.wait(20)
