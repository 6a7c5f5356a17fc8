"""Metrics exposition: metrics live on the registry passed in only, the text format parses,
the metrics app and a worker's own metrics port serve the registry."""

from __future__ import annotations

from metrics_registry import REQ, m, reg  # noqa: F401 - fixture
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collectors import CoreMetrics, metrics_response


# -- registry hygiene and exposition -------------------------------------------------------
def test_metrics_live_on_the_registry_passed_in_only():
    a, b = CollectorRegistry(), CollectorRegistry()
    CoreMetrics(a).observe("pay", "ok", seconds=0.01)
    CoreMetrics(b)  # a second instance on another registry: no duplicate error
    assert (
        a.get_sample_value(REQ, {"step": "pay", "outcome": "ok", "reason": "", "pay_org": ""}) == 1
    )
    assert (
        b.get_sample_value(REQ, {"step": "pay", "outcome": "ok", "reason": "", "pay_org": ""}) == 0
    )
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("paywatch_")]


def test_metrics_response_is_the_text_format_and_parses(reg, m):
    m.observe("pay", "ok", seconds=0.01)
    body, ctype = metrics_response(reg)
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"paywatch_link_requests", "paywatch_link_latency_seconds"} <= names
    om, om_type = metrics_response(reg, accept="application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")


def test_the_metrics_app_serves_the_registry_and_answers_lifespan(reg, m):
    import asyncio

    import httpx

    from collectors import make_metrics_app

    m.observe("pay", "ok", seconds=0.01)
    app = make_metrics_app(reg)

    async def run() -> tuple[httpx.Response, httpx.Response, list[dict]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ok = await client.get("/metrics")
            missing = await client.get("/other")
        sent: list[dict] = []
        events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict:
            return next(events)

        async def send(message: dict) -> None:
            sent.append(message)

        await app({"type": "lifespan"}, receive, send)
        return ok, missing, sent

    ok, missing, sent = asyncio.run(run())
    assert ok.status_code == 200 and "version=0.0.4" in ok.headers["content-type"]
    assert 'paywatch_link_requests_total{outcome="ok",pay_org="",reason="",step="pay"} 1.0' in (
        ok.text
    )
    assert missing.status_code == 404
    assert [s["type"] for s in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_worker_can_serve_its_own_metrics_port(reg, m):
    import httpx
    from conftest import free_port

    from collectors import start_metrics_server

    m.shadow("refund")
    port = free_port()
    server, thread = start_metrics_server(reg, port)
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert 'paywatch_shadow_requests_total{step="refund"} 1.0' in body
