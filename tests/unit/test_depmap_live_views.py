"""The live map's drawing and the impact query in traffic, without Streamlit or a database:
the layered layout keeps labels apart at 17 nodes, health follows Kiali's thresholds and
breaker/switch state, the impact query counts orgs, rates, merchants and alternatives."""

from __future__ import annotations

import itertools

import pytest
from seeded_map import contract_map

from console.views.depmap_graph import graph, layout
from console.views.depmap_live import attention, breaker_states, impact_hits, live_map
from stability.depmap_seed import default_map
from stability.edge_stats import LiveTraffic, Traffic, health
from stability.errors import UnknownResource
from stability.impact_traffic import RecentTraffic, traffic_impact
from stability.switches import SwitchSnapshot

A, B, C = "channel.SANDBOX_A", "channel.SANDBOX_B", "channel.SANDBOX_C"
BUSY = Traffic(1234.5, 0.4567, 12.345, 3.0, 0.0)  # the longest figures a label shows


def _busy(dmap) -> LiveTraffic:
    edges = {(e.caller, e.callee): BUSY for e in dmap.edges}
    return LiveTraffic(edges, {r.name: BUSY for r in dmap.resources}, 300, 0)


@pytest.mark.parametrize("dmap", [contract_map(), default_map()], ids=["contract", "seed"])
def test_no_label_overlaps_another_label_or_node(dmap):
    everything = frozenset(r.name for r in dmap.resources)
    snap = SwitchSnapshot(degraded=everything)
    nodes, _ = live_map(dmap, snap, dict.fromkeys(everything, "forced_open"), _busy(dmap))
    lay = layout(dmap, {n: v["label"] for n, v in nodes.items()})
    assert len(lay.pos) == len(dmap.resources)
    for a, b in itertools.combinations(sorted(lay.pos), 2):
        assert not lay.labels[a].overlaps(lay.labels[b]), (a, b)
        assert not lay.labels[a].overlaps(lay.markers[b]), (a, b)
        assert not lay.labels[b].overlaps(lay.markers[a]), (b, a)
    for box in lay.labels.values():  # inside the figure
        assert box.x0 >= 0 and box.y0 >= 0
        assert box.x1 <= lay.width and box.y1 <= lay.height


def test_links_left_dependencies_right():
    dmap = contract_map()
    nodes, _ = live_map(dmap, None, {}, LiveTraffic({}, {}, 300, 0))
    lay = layout(dmap, {n: v["label"] for n, v in nodes.items()})
    x = {n: p[0] for n, p in lay.pos.items()}
    entries = [r.name for r in dmap.resources if r.kind in ("link", "job")]
    assert len(dmap.resources) == 17 and len({x[n] for n in entries}) == 1
    for e in dmap.edges:
        assert x[e.caller] < x[e.callee], e
    assert lay.left == frozenset(entries)


def test_health_thresholds_are_kialis():
    assert health(None) == "unknown" and health(0.0) == "ok" and health(0.001) == "ok"
    assert health(0.0011) == "warn" and health(0.2) == "warn" and health(0.2001) == "bad"


def test_breakers_and_switches_colour_the_map():
    dmap = contract_map()
    live = LiveTraffic({("link.pay", A): Traffic(5.0, 0.0, 0.02)}, {A: Traffic(5.0, 0.0)}, 60, 0)
    snap = SwitchSnapshot(degraded=frozenset({"notification"}))
    nodes, edges = live_map(
        dmap, snap, breaker_states([{"resource": A, "state": "closed/open"}]), live
    )
    assert nodes[A]["breaker"] == "open" and nodes[A]["status"] == "bad"
    assert (
        edges[("link.pay", A)]["status"] == "bad"
        and edges[("job.compensation", A)]["status"] == "bad"
    )
    assert nodes["notification"]["status"] == "warn" and nodes["notification"]["degraded"]
    listed = {r["resource"]: r for r in attention(nodes)}  # the Overview's Dependencies
    assert list(listed)[0] == A and set(listed) == {A, "notification"}
    assert (listed["notification"]["switch"], listed[A]["switch"]) == ("degraded", "")
    fig = graph(dmap, nodes, edges, hit={"link.pay": "partial"})
    outline = {}
    for t in fig.data:
        if t.name.startswith("resources-"):
            outline.update(zip(t.customdata, t.marker.line.color, strict=True))
    assert outline["notification"] == "#9467bd" and outline["link.pay"] == "#000"
    assert outline["risk"] == "#fff"
    dashed = {t.name: t.line.dash for t in fig.data if t.mode == "lines"}
    assert dashed["link.notify->notification"] == "dash" and dashed[f"link.pay->{A}"] == "solid"


def _traffic() -> RecentTraffic:
    """link.pay 40/s: A 25/s (8 merchants), B 15/s (4 merchants); C idle."""
    merchants_a = {f"a{i}": 10 for i in range(8)}
    grants = {m: frozenset({"SANDBOX_A"}) for m in merchants_a}
    for m in ("a0", "a1", "a2"):
        grants[m] = frozenset({"SANDBOX_A", "SANDBOX_B"})
    grants["a3"] = frozenset({"SANDBOX_A", "SANDBOX_C"})
    merchants_b = {f"b{i}": 5 for i in range(4)}
    grants |= {m: frozenset({"SANDBOX_B"}) for m in merchants_b}
    return RecentTraffic(
        {"link.pay": {"SANDBOX_A": 25.0, "SANDBOX_B": 15.0}, "link.refund": {"": 2.0}},
        {"SANDBOX_A": merchants_a, "SANDBOX_B": merchants_b},
        grants,
    )


def test_one_channel_down_is_one_org_of_three_with_alternatives():
    out = {i.link: i for i in traffic_impact(contract_map(), [A], _traffic())}
    assert out["link.pay"].message == (
        "link.pay: 1/3 pay orgs down (SANDBOX_A); 25.0 payments/s across 8 merchants "
        "affected; 4 of them have another granted org"
    )
    assert out["link.refund"].effect == "partial" and out["link.refund"].rate_affected is None
    assert set(out) == {"link.pay", "link.refund", *(j for j in out if j.startswith("job."))}
    assert out["job.active_query"].orgs_down == ("SANDBOX_A",)
    out = {i.link: i for i in traffic_impact(contract_map(), [A], _traffic(), unhealthy=[C])}
    assert out["link.pay"].merchants_with_alternative == 3


def test_several_failures_at_once():
    dmap = contract_map()
    two = {i.link: i for i in traffic_impact(dmap, [A, "notification"], _traffic())}
    assert two["link.pay"].effect == "partial" and two["link.notify"].effect == "degrades"
    assert two["link.notify"].via == ("notification",)
    every = {i.link: i for i in traffic_impact(dmap, [A, B, C], _traffic())}
    assert every["link.pay"].effect == "fails" and every["link.pay"].rate_affected == 40.0
    assert every["link.pay"].message.startswith("link.pay: fails (via channel.SANDBOX_A, ")
    db = {i.link: i for i in traffic_impact(dmap, ["database", A], _traffic())}
    assert {i.effect for i in db.values()} == {"fails"} and len(db) == 8
    assert db["link.pay"].via == ("database",) and db["link.pay"].merchants_affected == 12
    hot = {i.link: i for i in traffic_impact(dmap, ["ledger.hot_account"], _traffic())}
    assert set(hot) == {"link.pay", "link.refund", "link.callback"}
    assert {i.effect for i in hot.values()} == {"degrades"}
    hits = impact_hits(dmap, ["ledger.hot_account"], hot.values())
    assert hits["ledger.posting"] == "degrades" and hits["ledger.hot_account"] == "fails"
    with pytest.raises(UnknownResource):
        traffic_impact(dmap, ["coupon"], _traffic())
