"""The simulator's parts: Poisson arrivals, the traffic mix, demo merchants, the client-side
audit, drills, reports (receivers and the fault proxy have files of their own)."""

from __future__ import annotations

import json
import random
import stat
import statistics
from collections import Counter

import pytest

from simulator.drills import BUILTIN, drill_from_dict, load_drill
from simulator.ledger import ClientLedger, TradeRecord, audit
from simulator.traffic import (
    DEFAULT_MIX,
    Mix,
    amount,
    arrivals,
    choose_org,
    combo_split,
    interarrival,
)


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
