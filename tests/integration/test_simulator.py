"""The simulator's parts: Poisson arrivals, the traffic mix, receivers of signed
notifications, demo merchants, the client-side audit, drills, the fault proxy, reports."""

from __future__ import annotations

import json
import random
import socket
import stat
import statistics
import threading
import time
from collections import Counter

import httpx
import pytest

from paycore.channels.signing import signed_headers
from simulator.drills import BUILTIN, drill_from_dict, load_drill
from simulator.faultproxy import FaultProxy, proxied_url, upstream_of
from simulator.ledger import ClientLedger, TradeRecord, audit
from simulator.receiver import ReceiverServer
from simulator.traffic import (
    DEFAULT_MIX,
    Mix,
    amount,
    arrivals,
    choose_org,
    combo_split,
    interarrival,
)

SECRET = "notify-secret-for-tests"


# -- traffic ---------------------------------------------------------------------------------
def test_interarrival_times_are_exponential_at_the_rate():
    rng = random.Random(42)
    gaps = [interarrival(rng, 4.0) for _ in range(20_000)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.25, rel=0.03)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, rel=0.05)  # CV of exponential
    with pytest.raises(ValueError):
        interarrival(rng, 0)


def test_arrival_counts_per_second_are_poisson():
    times = []
    for t in arrivals(random.Random(7), 5.0):
        if t >= 2_000:
            break
        times.append(t)
    counts = Counter(int(t) for t in times)
    per_second = [counts.get(s, 0) for s in range(2_000)]
    mean = statistics.fmean(per_second)
    assert mean == pytest.approx(5.0, rel=0.05)
    assert statistics.pvariance(per_second) / mean == pytest.approx(1.0, abs=0.12)  # dispersion
    assert times == sorted(times)


def test_the_same_seed_gives_the_same_traffic_shape():
    a = [round(t, 9) for _, t in zip(range(50), arrivals(random.Random(3), 2.0), strict=False)]
    b = [round(t, 9) for _, t in zip(range(50), arrivals(random.Random(3), 2.0), strict=False)]
    assert a == b


def test_mix_follows_its_weights_and_restrictions():
    mix = Mix(DEFAULT_MIX)
    rng = random.Random(1)
    n = 30_000
    seen = Counter(mix.choose(rng) for _ in range(n))
    for action in DEFAULT_MIX:
        assert seen[action] / n == pytest.approx(mix.share(action), abs=0.01)
    channel = seen["instant_channel"] + seen["guaranteed_channel"] + seen["recharge"]
    assert channel > n / 2  # mostly channel pays
    only = Counter(mix.choose(rng, ["refund", "abandon"]) for _ in range(2_000))
    assert set(only) == {"refund", "abandon"}
    with pytest.raises(ValueError, match="unknown actions"):
        Mix({"steal": 1.0})
    with pytest.raises(ValueError):
        Mix({"refund": 0.0})


def test_orgs_amounts_and_combined_payments():
    rng = random.Random(5)
    orgs = Counter(choose_org(rng, ["A", "B", "C"]) for _ in range(10_000))
    assert orgs["A"] > orgs["B"] > orgs["C"] > 1_000
    values = [amount(rng) for _ in range(5_000)]
    assert min(values) >= 100 and max(values) <= 500_000
    assert 3_500 < statistics.median(values) < 6_500
    for total, have, ratio in ((1_000, 10_000, 0.5), (1_000, 3, 0.9), (2, 100, 0.0)):
        bal, chan = combo_split(total, have, ratio)
        assert bal > 0 and chan > 0 and bal + chan == total and bal <= max(1, have)


# -- receivers -------------------------------------------------------------------------------
_HTTP = httpx.Client()


def _post(
    url: str,
    event_id: str,
    event_type: str = "trade.paid",
    secret: str = SECRET,
    timeout: float = 5.0,
) -> int:
    body = json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "created_at": "x",
            "data": {"out_trade_no": "t1"},
        }
    ).encode()
    headers = signed_headers(secret, body) | {
        "X-Paywatch-Event-Id": event_id,
        "Content-Type": "application/json",
    }
    resp = _HTTP.post(f"{url}/notify/shop", content=body, headers=headers, timeout=timeout)
    return resp.status_code


def test_receiver_verifies_signatures_and_dedupes_event_ids():
    effects = []
    rx = ReceiverServer(SECRET, on_event=effects.append).start()
    try:
        assert _post(rx.url, "evt_1") == 200
        assert _post(rx.url, "evt_1") == 200  # a redelivery: acknowledged, applied once
        assert _post(rx.url, "evt_2", "refund.succeeded") == 200
        assert _post(rx.url, "evt_3", secret="wrong") == 401
        bad = httpx.post(f"{rx.url}/notify/shop", content=b"{}", timeout=5)
        assert bad.status_code == 401
    finally:
        rx.stop()
    assert [e.event_id for e in effects] == ["evt_1", "evt_2"]
    assert [e.event_id for e in rx.received("trade.paid")] == ["evt_1"]
    assert effects[0].path == "/notify/shop" and effects[0].data == {"out_trade_no": "t1"}
    assert (rx.stats.accepted, rx.stats.duplicates, rx.stats.bad_signature) == (2, 1, 2)


def test_receiver_fails_the_configured_share_with_500_or_a_late_answer():
    rx = ReceiverServer(SECRET, failure_ratio=0.5, timeout_share=0.0, seed=11).start()
    try:
        codes = Counter(_post(rx.url, f"evt_{i}") for i in range(200))
    finally:
        rx.stop()
    assert codes[500] == rx.stats.failed_500 and 70 <= codes[500] <= 130
    assert codes[200] == rx.stats.accepted == len(rx.received())
    slow = ReceiverServer(SECRET, failure_ratio=1.0, timeout_share=1.0, timeout_s=2.0).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            _post(slow.url, "evt_late", timeout=0.5)
    finally:
        slow.stop()
    assert slow.stats.failed_timeout == 1 and not slow.received()


def test_receiver_takes_the_pay_cores_real_deliveries_exactly_once(shop):
    from datetime import timedelta as _td

    from paycore.notify.delivery import NotificationDelivery
    from paycore.notify.outbox import add_notification

    effects = []
    # the shop signs with its own secret (rotated here, since the fixture did not keep it)
    own = shop.core.merchants.rotate_notify_secret(shop.mid, overlap=_td(0)).secret
    rx = ReceiverServer(
        SECRET,
        failure_ratio=1.0,
        timeout_share=0.0,
        on_event=effects.append,
        path_secrets={"/notify/shop": own},
    )
    rx.start()
    delivery = NotificationDelivery(shop.core.db, secret=SECRET, schedule=(1, 1), timeout=2.0)
    try:

        def add(s):
            return add_notification(
                s,
                shop.core,
                merchant_id=shop.mid,
                event_type="trade.paid",
                trade_id=None,
                payload={"out_trade_no": "t9"},
                url=f"{rx.url}/notify/shop",
            )

        event_id = shop.core.db.run(add)
        assert delivery.deliver_due() == 1 and delivery.failed == 1  # answered 500: retried
        rx.failure_ratio = 0.0
        from datetime import UTC, datetime, timedelta

        later = datetime.now(UTC) + timedelta(seconds=5)
        assert delivery.deliver_due(now=later) == 1 and delivery.delivered == 1
        with shop.core.db.session() as s:
            from sqlalchemy import select

            from paycore.db.schema import Notification

            row_id = s.execute(select(Notification.id)).scalar_one()
        assert delivery.resend(row_id, "ops")  # a manual resend: the merchant sees it again
        assert delivery.deliver_due(now=later + timedelta(seconds=1)) == 1
    finally:
        delivery.close()
        rx.stop()
    assert [e.event_id for e in effects] == [event_id]  # the effect happened once
    assert (rx.stats.failed_500, rx.stats.accepted, rx.stats.duplicates) == (1, 1, 1)


# -- demo merchants --------------------------------------------------------------------------
def test_demo_merchants_are_onboarded_once_and_their_tokens_kept(core, tmp_path):
    from simulator.merchants import ensure_demo_merchants, load_merchants

    var = str(tmp_path / "var")
    orgs = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
    first = ensure_demo_merchants(core, var, "http://127.0.0.1:8300", orgs)
    again = ensure_demo_merchants(core, var, "http://127.0.0.1:8300", orgs)
    assert [m.merchant_id for m in first] == [m.merchant_id for m in again]
    assert [m.token for m in first] == [m.token for m in again]
    path = tmp_path / "var" / "demo_merchants.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kinds = {t for m in first for t in m.trade_types}
    assert kinds == {"instant", "guaranteed", "recharge", "withdraw", "transfer"}
    assert len({m.fee_bps for m in first}) > 1 and len({m.pay_orgs for m in first}) > 1
    for m in first:
        info = core.merchants.authenticate(m.token)
        assert info.merchant_id == m.merchant_id and info.notify_url == m.notify_url
        assert m.notify_url == f"http://127.0.0.1:8300/notify/{m.key}"
        assert m.token not in repr(m)
    path.unlink()  # tokens lost: no rotation in the pay core, so new merchants are onboarded
    fresh = ensure_demo_merchants(core, var, "http://127.0.0.1:8300", orgs)
    assert fresh[0].merchant_id == "DEMO-SHOP-2" and fresh[0].token != first[0].token
    assert [m.merchant_id for m in load_merchants(var)] == [m.merchant_id for m in fresh]


# -- the client-side audit -------------------------------------------------------------------
def _detail(status, orders=(), refunds=(), paid=0, refunded=0, amount_=100):
    return {
        "trade": {
            "status": status,
            "amount": amount_,
            "paid_amount": paid,
            "refunded_amount": refunded,
        },
        "pay_orders": [{"status": s} for s in orders],
        "refunds": [
            {"trade": {"status": s, "amount": a, "out_trade_no": n}} for n, s, a in refunds
        ],
    }


def test_audit_counts_lost_and_doubled_payments():
    ledger = ClientLedger()
    cases = {
        "ok": (_detail("paid", ["success"], paid=100), True),
        "closed": (_detail("closed", ["failed"]), False),
        "twice": (_detail("paid", ["success", "success"], paid=100), True),
        "hanging": (_detail("paying", ["processing"]), False),
        "told": (_detail("created", ["failed"]), True),
        "over_refunded": (
            _detail(
                "paid",
                ["success"],
                [("r1", "paid", 80), ("r2", "paid", 80)],
                paid=100,
                refunded=160,
            ),
            True,
        ),
        "silent": (_detail("paid", ["success"], paid=100), False),
    }
    for no, (_, told) in cases.items():
        rec = ledger.add(TradeRecord("M1", no, "instant", 100, "A", "u1"))
        rec.move("paying")
        rec.told_paid = told
    ledger.add(TradeRecord("M1", "never", "instant", 100, "A", "u1"))  # refused: not checked
    result = audit(ledger, lambda r: cases[r.out_trade_no][0])
    assert result.checked == len(cases)
    assert (result.lost, result.unresolved, result.doubled) == (2, 1, 2)
    assert (result.paid, result.unpaid, result.unnotified) == (4, 1, 1)
    assert any("hanging" in e for e in result.examples)


# -- drills ----------------------------------------------------------------------------------
def test_drills_scale_aim_and_load_from_yaml(tmp_path):
    d = BUILTIN["channel-failure"].for_org("SANDBOX_B").scaled(0.1)
    assert d.duration_s == pytest.approx(24.0)
    assert [(s.at_s, s.target, dict(s.params)) for s in d.steps] == [
        (pytest.approx(6.0), "SANDBOX_B", {"error_rate": 1.0}),
        (pytest.approx(18.0), "SANDBOX_B", {"error_rate": 0.0}),
    ]
    assert set(BUILTIN) == {"channel-latency", "channel-failure", "redis-down", "db-slow"}
    path = tmp_path / "drill.yaml"
    path.write_text(
        "name: flaky\nsummary: half the calls fail\nneeds: sandbox\nduration_s: 30\n"
        "steps:\n  - {at_s: 5, kind: knobs, target: '{org}', params: "
        "{error_rate: 0.5}}\n"
    )
    flaky = load_drill(str(path))
    assert flaky.name == "flaky" and flaky.steps[0].params == {"error_rate": 0.5}
    with pytest.raises(ValueError, match="no drill"):
        load_drill("no-such-drill")
    with pytest.raises(ValueError, match="within duration"):
        drill_from_dict(
            {
                "name": "x",
                "needs": "redis",
                "duration_s": 1,
                "steps": [{"at_s": 5, "kind": "proxy", "target": "redis"}],
            }
        )


def test_drills_that_cannot_apply_say_so():
    from simulator.runner import DrillTargets, not_applicable

    bare = DrillTargets()
    assert "Redis" in not_applicable(BUILTIN["redis-down"], bare)
    assert "SQLite" in not_applicable(BUILTIN["db-slow"], bare)
    assert "sandbox" in not_applicable(BUILTIN["channel-failure"], bare)


# -- the fault proxy -------------------------------------------------------------------------
@pytest.fixture
def echo_server():
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue

            def echo(c=conn):
                with c:
                    while data := c.recv(1024):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[:2]
    stop.set()
    t.join(2)
    srv.close()


def _roundtrip(addr, payload=b"ping") -> float:
    start = time.perf_counter()
    with socket.create_connection(addr, timeout=3) as c:
        c.sendall(payload)
        assert c.recv(1024) == payload
    return time.perf_counter() - start


def test_fault_proxy_adds_latency_and_cuts_connections(echo_server):
    proxy = FaultProxy(echo_server, name="echo").start()
    try:
        assert _roundtrip(proxy.address) < 0.15
        proxy.set(latency_ms=200)
        assert _roundtrip(proxy.address) >= 0.2
        proxy.reset()
        held = socket.create_connection(proxy.address, timeout=3)
        held.sendall(b"a")
        assert held.recv(10) == b"a"
        proxy.set(down=True)  # the open connection is cut, new ones are closed at once
        assert held.recv(10) == b""
        held.close()
        with socket.create_connection(proxy.address, timeout=3) as refused:
            assert refused.recv(10) == b""  # accepted and closed at once, as a dead server
        assert proxy.refused == 1
        proxy.reset()
        assert _roundtrip(proxy.address) < 0.15
    finally:
        proxy.stop()
    assert upstream_of("sqlite:///var/paywatch.db", 5432) is None
    assert upstream_of("postgresql+psycopg://u:pw@db:6543/x", 5432) == ("db", 6543)
    url = proxied_url("postgresql+psycopg://u:pw@db/x?options=-c", proxy)
    host, port = proxy.address
    assert url == f"postgresql+psycopg://u:pw@{host}:{port}/x?options=-c"


def test_fault_proxy_takes_redis_down_and_back(redis_url):
    import redis

    upstream = upstream_of(redis_url, 6379)
    assert upstream is not None
    proxy = FaultProxy(upstream, name="redis").start()
    client = redis.Redis.from_url(
        proxied_url(redis_url, proxy), socket_timeout=1, socket_connect_timeout=1
    )
    try:
        assert client.ping()
        proxy.set(down=True)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        proxy.reset()
        assert client.ping()
    finally:
        client.close()
        proxy.stop()


# -- reports ---------------------------------------------------------------------------------
def test_reports_are_stored_listed_and_read_back(migrated_db, tmp_path):
    from simulator.report import (
        checks,
        detail_tables,
        get_report,
        list_reports,
        save_report,
        write_json,
    )

    report = {
        "drill": {"name": "db-slow"},
        "status": "failed",
        "target": "database",
        "started_at": "2026-11-23T05:00:00+00:00",
        "finished_at": "2026-11-23T05:04:00+00:00",
        "time_factor": 1.0,
        "traffic": {"pays_sent": 10, "paid": 8, "pay_failed": 1, "pays_refused": 1},
        "audit": {"lost": 1, "doubled": 0},
        "platform": {
            "trial_balance": {"ok": True},
            "recon": {"differences": 2},
            "money_not_returned": 0,
        },
    }
    report["checks"] = checks(report)
    assert report["checks"] == {
        "no_payment_lost": False,
        "no_payment_doubled": True,
        "trial_balance_zero": True,
        "reconciliation_clean": False,
    }
    path = write_json(report, tmp_path)
    assert path.parent.name == "drills" and json.loads(path.read_text())["target"] == "database"
    rid = save_report(migrated_db.engine, report, str(path))
    [row] = list_reports(migrated_db.engine)
    assert (
        row["id"],
        row["name"],
        row["payments_sent"],
        row["payments_failed"],
        row["lost"],
        row["recon_differences"],
    ) == (rid, "db-slow", 10, 2, 1, 2)
    assert get_report(migrated_db.engine, rid)["checks"]["no_payment_lost"] is False
    assert get_report(migrated_db.engine, rid + 1) is None
    tables = detail_tables(report)
    assert {r["check"] for r in tables["checks"]} == set(report["checks"])
