"""The meta-monitoring collectors on a fresh registry: job runs, the alert engine's own
counters, build info, and HTTP metrics through a real FastAPI app."""

from __future__ import annotations

import platform

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from collectors.build_info import paywatch_version, register_process_metrics
from collectors.http_metrics import HttpMetricsMiddleware, http_metrics_for
from collectors.job_metrics import AlertEngineMetrics, JobMetrics


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def test_a_job_records_runs_duration_and_last_success(reg) -> None:
    now = {"t": 1000.0}
    jobs = JobMetrics(reg, clock=lambda: now["t"])
    fail = {"on": False}

    def job() -> str:
        if fail["on"]:
            raise ValueError("boom")
        return "done"

    run = jobs.wrap("recon_internal", 60.0, job)
    v = reg.get_sample_value
    last = "paywatch_job_last_success_timestamp_seconds"
    assert v(last, {"job": "recon_internal"}) == 1000.0  # start-up: stale from here
    assert v("paywatch_job_interval_seconds", {"job": "recon_internal"}) == 60.0
    assert v("paywatch_job_runs_total", {"job": "recon_internal", "outcome": "error"}) == 0
    now["t"] = 1060.0
    assert run() == "done"
    fail["on"] = True
    now["t"] = 1120.0
    with pytest.raises(ValueError):  # the scheduler still sees (and logs) the failure
        run()
    assert v("paywatch_job_runs_total", {"job": "recon_internal", "outcome": "ok"}) == 1
    assert v("paywatch_job_runs_total", {"job": "recon_internal", "outcome": "error"}) == 1
    assert v(last, {"job": "recon_internal"}) == 1060.0  # a failure is no success
    assert v("paywatch_job_duration_seconds_count", {"job": "recon_internal"}) == 2


def test_the_alert_engine_metrics_start_at_zero_and_count(reg) -> None:
    m = AlertEngineMetrics(reg)
    v = reg.get_sample_value
    assert v("paywatch_alert_rule_errors_total", {"rule": ""}) == 0  # a rate, not no data
    m.evaluated()
    m.rule_failed("slo_pay_success")
    m.rule_failed("slo_pay_success")
    assert v("paywatch_alert_evaluations_total") == 1
    assert v("paywatch_alert_rule_errors_total", {"rule": "slo_pay_success"}) == 2


def test_build_info_and_the_process_collectors(reg) -> None:
    register_process_metrics(reg)
    labels = {"version": paywatch_version(), "python": platform.python_version()}
    assert reg.get_sample_value("paywatch_build_info", labels) == 1
    assert paywatch_version() != ""
    assert reg.get_sample_value("python_info", {**_python_info()}) == 1
    names = {f.name for f in reg.collect()}
    assert {"process_cpu_seconds", "python_gc_collections"} <= names


def _python_info() -> dict[str, str]:
    major, minor, patch = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }


def test_http_metrics_by_route_template_status_and_500(reg) -> None:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        if thing_id == "missing":
            raise HTTPException(404)
        if thing_id == "crash":
            raise RuntimeError("bug")
        return {"id": thing_id}

    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics_for(reg))
    assert http_metrics_for(reg) is http_metrics_for(reg)  # one set of families per registry
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/v1/things/123456789").status_code == 200
        assert http.get("/v1/things/missing").status_code == 404
        assert http.get("/v1/things/crash").status_code == 500
        assert http.post("/v1/things/1").status_code == 405
        assert http.get("/elsewhere").status_code == 404
    v = reg.get_sample_value
    route = "/v1/things/{thing_id}"
    req = "paywatch_http_requests_total"
    assert v(req, {"method": "GET", "route": route, "status": "200"}) == 1
    assert v(req, {"method": "GET", "route": route, "status": "404"}) == 1
    assert v(req, {"method": "GET", "route": route, "status": "500"}) == 1
    assert v(req, {"method": "GET", "route": "unmatched", "status": "404"}) == 1
    assert v(req, {"method": "POST", "route": route, "status": "405"}) == 1  # a known route
    count = "paywatch_http_request_duration_seconds_count"
    assert v(count, {"method": "GET", "route": route}) == 3
