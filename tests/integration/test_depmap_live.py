"""The live dependency map against real PostgreSQL: real guards in two processes record their
outcomes, their samplers write them into the database's metric store, and the map reads them
back (per edge and node: req/s, error ratio, p99, health); the impact query weighs the
traffic of merchants who paid through the real pay core."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from live_map_world import merchants_paying, start

from console.views.depmap_graph import graph
from console.views.depmap_live import live_map, recent_traffic
from stability.depmap_seed import default_map
from stability.edge_stats import live_traffic
from stability.impact_traffic import traffic_impact

RED, YELLOW, GREEN, GREY = "#d62728", "#ff7f0e", "#2ca02c", "#7f7f7f"
A, B, C = "channel.SANDBOX_A", "channel.SANDBOX_B", "channel.SANDBOX_C"


@pytest.fixture
def engine(pg_url):
    eng = sa.create_engine(pg_url)
    yield eng
    eng.dispose()


def _colours(fig):
    edges = {t.name: t.line.color for t in fig.data if t.mode == "lines"}
    nodes = {}
    for t in fig.data:
        if t.name.startswith("resources-"):
            nodes.update(zip(t.customdata, t.marker.color, strict=True))
    return nodes, edges


def test_a_channel_at_55_percent_success_is_red_across_processes(engine):
    """Two API processes call channel A: 55 % success in one, all fine in the other (45
    failures in 150 calls: 30 % errors); B answers every call; nobody calls C."""
    from collectors import TimeSeriesStore

    dmap, t = default_map(), time.time()
    api1, api2 = start(engine, dmap, "api:1", "api:2", at=t)
    api1.calls(A, ok=55, failed=45)
    api2.calls(A, ok=50, failed=0)
    api1.calls(B, ok=120, failed=0)
    api1.calls("risk", ok=999, failed=1)  # 0.1 % errors: yellow starts above it
    api2.calls("risk", ok=0, failed=1)
    for proc in (api1, api2):
        proc.sample(t)
    live = live_traffic(TimeSeriesStore(engine), t, window=300)
    a = live.edge("link.pay", A)
    assert a.error_ratio == pytest.approx(45 / 150) and a.health == "bad"
    assert a.rps == pytest.approx(150 / 60, rel=0.02)
    assert a.p99_s is not None and a.p99_s < 0.01
    assert live.edge("link.pay", B).error_ratio == 0 and live.edge("link.pay", B).health == "ok"
    assert live.edge("link.pay", "risk").health == "warn"
    assert live.edge("link.pay", C).rps is None
    nodes, edges = live_map(dmap, None, {}, live)
    assert nodes[A]["status"] == "bad" and edges[("link.pay", A)]["status"] == "bad"
    assert nodes[B]["status"] == "ok" and nodes[C]["status"] == "unknown"
    assert "30.0% err" in nodes[A]["label"]
    node_colour, edge_colour = _colours(graph(dmap, nodes, edges))
    assert node_colour[A] == RED and edge_colour[f"link.pay->{A}"] == RED
    assert node_colour[B] == GREEN and edge_colour[f"link.pay->{B}"] == GREEN
    assert node_colour["risk"] == YELLOW and node_colour[C] == GREY
    # an open breaker is red even without traffic; a degraded switch is marked
    from stability.switches import SwitchSnapshot

    snap = SwitchSnapshot(degraded=frozenset({"risk"}))
    nodes, edges = live_map(dmap, snap, {C: "open"}, live)
    assert nodes[C]["status"] == "bad" and edges[("link.pay", C)]["status"] == "bad"
    assert nodes["risk"]["degraded"] and "[degraded]" in nodes["risk"]["label"]


def test_impact_in_traffic_counts_payments_merchants_and_alternatives(engine, pg_url):
    """Merchants paid through A (one granted A only, one A and B, one A and C) and B: with
    A down, link.pay loses one pay org of three, the A payers are affected and two of them
    have another org; with C red already, one."""
    from collectors import TimeSeriesStore

    dmap, t = default_map(), time.time()
    (api,) = start(engine, dmap, "api:1", at=t)
    plan = {
        "monly": (["SANDBOX_A"], "SANDBOX_A", 3),
        "mab": (["SANDBOX_A", "SANDBOX_B"], "SANDBOX_A", 2),
        "mac": (["SANDBOX_A", "SANDBOX_C"], "SANDBOX_A", 1),
        "mb": (["SANDBOX_B"], "SANDBOX_B", 4),
    }
    merchants_paying(pg_url, plan, metrics=api.metrics)
    api.sample(t)
    traffic = recent_traffic(engine, TimeSeriesStore(engine), t, window=300)
    assert {org: len(m) for org, m in traffic.merchants.items()} == {"SANDBOX_A": 3, "SANDBOX_B": 1}
    (pay,) = [i for i in traffic_impact(dmap, [A], traffic) if i.link == "link.pay"]
    assert (pay.effect, pay.orgs_down, pay.orgs_total) == ("partial", ("SANDBOX_A",), 3)
    assert pay.rate_affected == pytest.approx(6 / 60, rel=0.05)
    assert (pay.merchants_affected, pay.merchants_with_alternative) == (3, 2)
    assert pay.message == (
        "link.pay: 1/3 pay orgs down (SANDBOX_A); 0.1 payments/s across 3 merchants "
        "affected; 2 of them have another granted org"
    )
    (pay,) = [i for i in traffic_impact(dmap, [A], traffic, unhealthy=[C]) if i.link == "link.pay"]
    assert pay.merchants_with_alternative == 1
    both = {i.link: i for i in traffic_impact(dmap, [A, B], traffic)}
    assert both["link.pay"].orgs_down == ("SANDBOX_A", "SANDBOX_B")
    assert both["link.pay"].merchants_affected == 4 and both["link.pay"].rate_affected == (
        pytest.approx(10 / 60, rel=0.05)
    )
    every = {i.link: i for i in traffic_impact(dmap, [A, B, C], traffic)}
    assert every["link.pay"].effect == "fails" and every["link.pay"].via == (A, B, C)
    db = {i.link: i for i in traffic_impact(dmap, ["database"], traffic)}
    assert db["link.pay"].effect == "fails" and db["link.pay"].merchants_affected == 4


def test_a_platforms_bulkheads_reach_its_metrics(pg_url):
    """``paywatch_bulkhead_in_flight`` / ``_limit`` are read from the guard at scrape time."""
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    platform = build_platform(Settings(database_url=pg_url), channels=False)
    try:
        guard, reg = platform.stability.guard, platform.observability.registry
        guard.set_bulkhead(A, 5)
        cap = reg.get_sample_value("paywatch_bulkhead_limit", {"resource": A})
        assert cap == 5
        assert reg.get_sample_value("paywatch_bulkhead_in_flight", {"resource": A}) == 0
        seen = []
        guard.call(
            A,
            lambda: seen.append(
                reg.get_sample_value("paywatch_bulkhead_in_flight", {"resource": A})
            ),
            caller="link.pay",
        )
        assert seen == [1]
    finally:
        platform.close()
