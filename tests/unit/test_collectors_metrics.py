"""Core-link metrics on a fresh CollectorRegistry: values after observe/timed/guard calls,
business gauges, bounded labels, exposition."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collectors import (
    LATENCY_BUCKETS,
    STEPS,
    BusinessSnapshot,
    CoreMetrics,
    LabelError,
    error_reason,
    metrics_response,
)

REQ = "paywatch_link_requests_total"
LAT = "paywatch_link_latency_seconds"


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def m(reg) -> CoreMetrics:
    return CoreMetrics(reg)


def req(reg, step, outcome="ok", reason="", pay_org=""):
    labels = {"step": step, "outcome": outcome, "reason": reason, "pay_org": pay_org}
    return reg.get_sample_value(REQ, labels)


def lat(reg, suffix, step, pay_org="", **extra):
    return reg.get_sample_value(f"{LAT}{suffix}", {"step": step, "pay_org": pay_org, **extra})


class Coded(Exception):
    code = "channel_declined"


class Refused(Exception):
    code = "insufficient_balance"
    http_status = 409


class Business(Exception):
    pass


# -- link steps ------------------------------------------------------------------------------
def test_observe_counts_by_outcome_and_reason_and_fills_the_histogram(reg, m):
    m.observe("pay", "ok", seconds=0.004)
    m.observe("pay", "ok", seconds=0.030)
    m.observe("pay", "error", "channel_timeout", "SANDBOX_A", seconds=2.0)
    assert req(reg, "pay") == 2
    assert req(reg, "pay", "error", "channel_timeout", "SANDBOX_A") == 1
    assert lat(reg, "_count", "pay") == 2
    assert lat(reg, "_sum", "pay") == pytest.approx(0.034)
    assert lat(reg, "_bucket", "pay", le="0.005") == 1
    assert lat(reg, "_bucket", "pay", le="0.05") == 2
    assert lat(reg, "_bucket", "pay", "SANDBOX_A", le="1.0") == 0
    assert lat(reg, "_bucket", "pay", "SANDBOX_A", le="2.5") == 1
    assert lat(reg, "_bucket", "pay", "SANDBOX_A", le="+Inf") == 1


def test_main_series_are_zero_initialised(reg, m):
    for step in STEPS:
        assert req(reg, step) == 0
        assert lat(reg, "_count", step) == 0


def test_latency_buckets_span_1ms_to_10s():
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_every_step_is_known_and_unknown_steps_and_outcomes_are_refused(reg, m):
    assert STEPS == (
        "trade_create",
        "pay",
        "channel_call",
        "callback",
        "refund",
        "ledger_posting",
        "notification",
    )
    for step in STEPS:
        m.observe(step, "ok", seconds=0.001)
        assert req(reg, step) == 1
    with pytest.raises(LabelError):
        m.observe("checkout", "ok", seconds=0.1)
    with pytest.raises(LabelError):
        m.observe("pay", "meh", seconds=0.1)
    with pytest.raises(LabelError):
        m.timed("checkout")


def test_timed_records_ok_and_the_latency(reg, m):
    with m.timed("ledger_posting"):
        pass
    assert req(reg, "ledger_posting") == 1
    assert lat(reg, "_count", "ledger_posting") == 1
    assert 0 <= lat(reg, "_sum", "ledger_posting") < 0.5


def test_timed_maps_exceptions_to_a_bounded_reason(reg, m):
    with pytest.raises(Coded), m.timed("channel_call", pay_org="SANDBOX_B"):
        raise Coded("declined for order 1234567890123")
    with pytest.raises(KeyError), m.timed("channel_call", pay_org="SANDBOX_B"):
        raise KeyError("x")
    with pytest.raises(Refused), m.timed("pay"):
        raise Refused()
    assert req(reg, "channel_call", "error", "channel_declined", "SANDBOX_B") == 1
    assert req(reg, "channel_call", "error", "KeyError", "SANDBOX_B") == 1
    assert req(reg, "pay", "rejected", "insufficient_balance") == 1  # 4xx: a refusal
    assert lat(reg, "_count", "channel_call", "SANDBOX_B") == 2


def test_configured_business_errors_count_as_rejected(reg):
    m = CoreMetrics(reg, rejected=(Business,))
    with pytest.raises(Business), m.timed("refund"):
        raise Business()
    assert req(reg, "refund", "rejected", "Business") == 1


def test_timed_outcome_can_be_set_inside_the_block(reg, m):
    with m.timed("channel_call", "SANDBOX_A") as t:
        t.outcome = "pending"
    assert req(reg, "channel_call", "pending", "", "SANDBOX_A") == 1


def test_error_reason_prefers_a_short_code():
    assert error_reason(Coded()) == "channel_declined"
    err = ValueError()
    err.code = "order 20240101000001"  # type: ignore[attr-defined]
    assert error_reason(err) == "ValueError"


def test_shadow_traffic_is_counted_apart(reg, m):
    m.shadow("pay")
    m.shadow("pay")
    assert reg.get_sample_value("paywatch_shadow_requests_total", {"step": "pay"}) == 2
    assert req(reg, "pay") == 0


# -- bounded labels --------------------------------------------------------------------------
def test_ids_never_become_label_values(reg, m):
    m.observe("pay", "error", "T202405011234567890", "SANDBOX_A", seconds=0.1)
    m.observe("pay", "ok", "", "5f0c2b9e-8d7a-4c1e-9b1a-3c2d1e0f9a8b", seconds=0.1)
    m.observe("pay", "ok", "", "merchant 42!", seconds=0.1)
    assert req(reg, "pay", "error", "other", "SANDBOX_A") == 1
    assert req(reg, "pay", "ok", "", "other") == 2
    overflow = "paywatch_label_overflow_total"
    assert reg.get_sample_value(overflow, {"label": "pay_org"}) >= 2
    assert reg.get_sample_value(overflow, {"label": "reason"}) >= 1


def test_distinct_pay_orgs_are_capped(reg):
    m = CoreMetrics(reg, max_pay_orgs=3)
    for org in ("ORG_A", "ORG_B", "ORG_C", "ORG_D", "ORG_E"):
        m.observe("channel_call", "ok", "", org, seconds=0.01)
    orgs = {
        s.labels["pay_org"]
        for f in reg.collect()
        if f.name == "paywatch_link_requests"
        for s in f.samples
        if s.name == REQ
    }
    assert orgs == {"", "ORG_A", "ORG_B", "ORG_C", "other"}


def test_no_label_value_of_a_busy_registry_looks_like_an_id(reg):
    m = CoreMetrics(reg, business=lambda: BusinessSnapshot(1, {"pending": 1}))
    for i in range(300):
        order_id = f"{1_700_000_000_000 + i}"
        m.observe("pay", "error", order_id, f"P{order_id}", seconds=0.001)
        m.guard_outcome(f"merchant-{order_id}", "link.pay", "pass", 0.001)
        with pytest.raises(RuntimeError), m.timed("callback"):
            raise RuntimeError(order_id)
    body, _ = metrics_response(reg)
    values = re.findall(rb'="([^"]*)"', body)
    assert values and not [v for v in values if re.search(rb"\d{6}", v)]


# -- guard recorder --------------------------------------------------------------------------
def test_guard_outcomes_and_breaker_state(reg, m):
    m.guard_outcome("channel.A", "link.pay", "pass", 0.01)
    m.outcome("channel.A", "link.pay", "pass", 0.01)  # the name stability's Recorder calls
    m.guard_outcome("risk", "link.pay", "fallback", 0.0)
    m.guard_outcome("risk", "link.pay", "somethingelse", 0.0)
    g = "paywatch_guard_outcomes_total"
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "pass"}) == 2
    assert reg.get_sample_value(g, {"resource": "risk", "outcome": "fallback"}) == 1
    assert reg.get_sample_value(g, {"resource": "risk", "outcome": "other"}) == 1
    state = "paywatch_breaker_state"
    m.set_breaker_state("channel.A", "closed")
    assert reg.get_sample_value(state, {"resource": "channel.A"}) == 0
    tripped = "paywatch_breaker_tripped"
    assert reg.get_sample_value(tripped, {"resource": "channel.A"}) == 0
    for new, value, away in (
        ("open", 2, 1),
        ("half_open", 1, 1),
        ("forced_open", 3, 1),
        ("forced_closed", 4, 0),
        ("closed", 0, 0),
    ):
        m.breaker_changed("channel.A", "x", new, "because")
        assert reg.get_sample_value(state, {"resource": "channel.A"}) == value
        assert reg.get_sample_value(tripped, {"resource": "channel.A"}) == away, new
    tr = "paywatch_breaker_transitions_total"
    assert reg.get_sample_value(tr, {"resource": "channel.A", "state": "open"}) == 1
    with pytest.raises(LabelError):
        m.set_breaker_state("channel.A", "ajar")


def test_a_real_guard_reports_through_core_metrics(reg, m):
    from stability.breaker import BreakerConfig
    from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
    from stability.errors import DependencyFailed
    from stability.guard import Guard
    from stability.switches import SwitchSnapshot

    dmap = DependencyMap(
        [
            ResourceSpec("link.pay", "link", core_link=True),
            ResourceSpec("risk", "service"),
            ResourceSpec("channel.A", "channel"),
        ],
        [
            EdgeSpec("link.pay", "risk", "weak", 50, fallback="allow"),
            EdgeSpec("link.pay", "channel.A", "strong", 100),
        ],
    )
    cfg = BreakerConfig(window_size=4, min_calls=4, failure_ratio=0.5, open_s=60)
    guard = Guard(dmap, breaker_config=cfg, recorders=[m])

    def boom():
        raise RuntimeError("down")

    assert guard.call("channel.A", lambda: "ok", caller="link.pay") == "ok"
    for _ in range(4):
        with pytest.raises(DependencyFailed):
            guard.call("channel.A", boom, caller="link.pay")
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"risk"})))
    assert guard.call("risk", lambda: "x", caller="link.pay", fallback=lambda: "fb") == "fb"
    g = "paywatch_guard_outcomes_total"
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "pass"}) == 1
    # pass + 3 errors fill the window at a 75 % failure ratio: the 4th call is refused
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "error"}) == 3
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "breaker_open"}) == 1
    assert reg.get_sample_value(g, {"resource": "risk", "outcome": "degraded"}) == 1
    assert reg.get_sample_value("paywatch_breaker_state", {"resource": "channel.A"}) == 2
    assert guard.stats.count("channel.A", "error") == 3  # same numbers as the guard's own


# -- business gauges -------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_business_gauges_come_from_the_snapshot_and_are_cached(reg):
    calls = []

    def snapshot() -> BusinessSnapshot:
        calls.append(1)
        return BusinessSnapshot(
            processing_orders=7,
            compensation_backlog={"pending": 3, "retrying": 2},
            notification_backlog=5,
            pending_postings=11,
            recon_differences={"missing_local": 1, "amount_mismatch": 4},
            trial_balance_ok=False,
        )

    m = CoreMetrics(reg, business=snapshot)
    clock = FakeClock()
    assert m.business is not None
    m.business.clock = clock
    assert not calls  # registering does not query
    v = reg.get_sample_value
    assert v("paywatch_orders_processing") == 7
    assert v("paywatch_compensation_backlog", {"status": "pending"}) == 3
    assert v("paywatch_compensation_backlog", {"status": "retrying"}) == 2
    assert v("paywatch_notification_backlog") == 5
    assert v("paywatch_pending_postings") == 11
    assert v("paywatch_recon_differences", {"kind": "amount_mismatch"}) == 4
    assert v("paywatch_trial_balance_ok") == 0
    assert v("paywatch_business_snapshot_ok") == 1
    n = len(calls)
    metrics_response(reg)
    metrics_response(reg)
    assert len(calls) == n  # within the ttl: no new queries
    clock.now += 5
    metrics_response(reg)
    assert len(calls) == n + 1


def test_a_failing_snapshot_serves_the_last_good_one_and_says_so(reg):
    state = {"fail": False}

    def snapshot() -> BusinessSnapshot:
        if state["fail"]:
            raise ConnectionError("db down")
        return BusinessSnapshot(processing_orders=2)

    m = CoreMetrics(reg, business=snapshot, business_ttl=0.0)
    assert reg.get_sample_value("paywatch_orders_processing") == 2
    state["fail"] = True
    body, _ = metrics_response(reg)  # the scrape itself does not fail
    assert b"paywatch_orders_processing 2.0" in body
    assert reg.get_sample_value("paywatch_business_snapshot_ok") == 0
    assert m.business is not None


def test_business_label_values_are_bounded_too(reg):
    CoreMetrics(reg, business=lambda: BusinessSnapshot(recon_differences={"order 123456789": 1}))
    assert reg.get_sample_value("paywatch_recon_differences", {"kind": "other"}) == 1


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
