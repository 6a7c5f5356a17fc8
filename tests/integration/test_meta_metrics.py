"""The meta-monitoring metrics of a real API and a real worker (PostgreSQL and SQLite):
HTTP requests by route template and status, the worker's job metrics through its real
scheduler, build info and process collectors; both ``/metrics`` pass ``promtool check
metrics`` (a missing promtool fails under CI, skips locally)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
from fastapi.testclient import TestClient

from collectors.exposition import metrics_response
from runtime.bootstrap import build_platform
from runtime.observability import sampler_instance
from runtime.settings import Settings
from runtime.worker import run_worker, worker_jobs


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing under CI")
        pytest.skip("promtool not installed")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, text=True, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def platform_for(db_url):
    made = []

    def make(role: str, node_id: int | None = 7):
        p = build_platform(
            Settings(database_url=db_url, node_id=node_id), channels=False, role=role
        )
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_the_api_counts_requests_by_route_template_and_passes_promtool(platform_for) -> None:
    platform = platform_for("api")
    with TestClient(platform.api_app()) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/trades/order-123456").status_code in (401, 403, 404)
        assert http.get("/no/such/path").status_code == 404
        text = http.get("/metrics").text
    reg = platform.observability.registry
    v = reg.get_sample_value
    assert (
        v("paywatch_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"})
        == 1
    )
    trade = [
        line
        for line in text.splitlines()
        if line.startswith("paywatch_http_requests_total") and "out_trade_no" in line
    ]
    assert len(trade) == 1 and 'route="/v1/trades/{out_trade_no}"' in trade[0], trade
    assert "order-123456" not in text  # never the raw path
    assert (
        v("paywatch_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"})
        == 1
    )
    assert (
        v("paywatch_http_request_duration_seconds_count", {"method": "GET", "route": "/healthz"})
        == 1
    )
    assert "paywatch_build_info{" in text and "process_cpu_seconds_total" in text
    assert "python_info{" in text
    promtool_check(text)


def test_the_workers_jobs_record_runs_and_pass_promtool(platform_for) -> None:
    platform = platform_for("worker")
    jobs, closables = worker_jobs(platform, "w-meta")
    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker,
        args=(platform, stop),
        kwargs={"extra_jobs": jobs, "worker_id": "w-meta", "install_signals": False},
    )
    reg = platform.observability.registry
    v = reg.get_sample_value
    ok = {"job": "compensation", "outcome": "ok"}
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (v("paywatch_job_runs_total", ok) or 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (v("paywatch_job_runs_total", ok) or 0) >= 2
    finally:
        stop.set()
        thread.join(60)
        for c in closables:
            c.close()
    # every job is wrapped: its schedule and a last success are published from the start
    for job in ("compensation", "exception_scan", "notifications", "trial_balance", "alerts"):
        assert v("paywatch_job_interval_seconds", {"job": job}) > 0, job
        assert v("paywatch_job_last_success_timestamp_seconds", {"job": job}) > 0, job
    assert v("paywatch_job_duration_seconds_count", {"job": "compensation"}) >= 2
    body, _ = metrics_response(reg)
    text = body.decode()
    assert "paywatch_alert_rule_errors_total" in text and "paywatch_build_info{" in text
    promtool_check(text)


def test_the_sampler_instance_is_stable_across_restarts(platform_for) -> None:
    first = platform_for("worker", node_id=12).observability.sampler.instance
    again = platform_for("worker", node_id=12).observability.sampler.instance
    assert first == again == "worker:node-12"  # no pid: a restart continues its series
    assert sampler_instance("api", None) == sampler_instance("api", None)
