"""The channel-failure, redis-down and db-slow drills on a real platform: PostgreSQL (and Redis
through the fault proxy), the sandbox channel over HTTP, the pay core API and a worker
(each on its thread), Poisson merchant traffic.

The 4-minute drill runs at a tenth of its timeline (the channel fails from t+6 s to
t+18 s of 24 s of traffic); the worker's alert evaluation and active query run the
platform's own rules and jobs at that speed (``fast_jobs``: windows and hold times x0.1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from runtime.drill_speed import fast_jobs
from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
from runtime.settings import Settings
from simulator import BUILTIN, SimConfig, Simulator, ensure_demo_merchants, run_drill
from simulator.report import list_reports

FACTOR = 0.1
ORG = "SANDBOX_A"


@pytest.fixture
def platform(pg_url, tmp_path):
    settings = Settings(
        database_url=pg_url,
        var_dir=str(tmp_path / "var"),
        notify_secret_value="drill-notify-secret",
    )
    stack = EmbeddedPlatform(
        settings, EmbeddedOptions(jobs=fast_jobs(FACTOR), sample_interval_s=1.0)
    ).start()
    yield settings, stack
    stack.stop()


def drill_traffic(
    settings: Settings, stack: EmbeddedPlatform, *, seed: int, receiver_failure_ratio: float
) -> Simulator:
    """6 arrivals/s from the demo merchants, with their notification receivers."""
    port = free_port()
    merchants = ensure_demo_merchants(
        stack.platform.paycore, settings.var_dir, f"http://127.0.0.1:{port}", settings.pay_orgs
    )
    return Simulator(
        SimConfig(
            api_url=stack.settings.api_url,
            rate=6.0,
            seed=seed,
            receiver_port=port,
            receiver_failure_ratio=receiver_failure_ratio,
            notify_secret=settings.notify_secret(),
        ),
        merchants,
    )


def test_channel_failure_drill_loses_and_doubles_nothing(platform):
    settings, stack = platform
    sim = drill_traffic(settings, stack, seed=8, receiver_failure_ratio=0.1)
    drill = BUILTIN["channel-failure"].for_org(ORG).scaled(FACTOR)
    try:
        report = run_drill(
            drill, sim, stack.targets(settings), target=ORG, time_factor=FACTOR, settle_s=90
        )
    finally:
        sim.stop()
    plat, audit, traffic = report["platform"], report["audit"], report["traffic"]
    summary = json.dumps({k: report.get(k) for k in ("checks", "audit", "traffic")})
    # the fault was applied and removed on time
    assert [s["params"] for s in report["steps"]] == [{"error_rate": 1.0}, {"error_rate": 0.0}]
    assert not any("error" in s for s in report["steps"]) and not report["undo_errors"]
    # the breaker for the failing org opened and the guard refused calls fast (counted)
    assert f"channel.{ORG}" in plat["breakers_opened"], summary
    assert plat["guard_outcomes"][f"channel.{ORG}"].get("breaker_open", 0) > 0
    assert stack.platform.stability.guard.stats.count(f"channel.{ORG}", "breaker_open") > 0
    assert traffic["refusals"].get(f"pay:dependency_unavailable:channel.{ORG}", 0) > 0
    # payments through the other orgs went on: no errors there, refused pays re-routed
    for other in ("SANDBOX_B", "SANDBOX_C"):
        outcomes = plat["guard_outcomes"][f"channel.{other}"]
        assert outcomes.get("pass", 0) > 0 and not outcomes.get("error"), outcomes
    paid_elsewhere = [
        r for r in sim.ledger if r.pay_org != ORG and r.state in ("paid", "confirmed")
    ]
    assert len(paid_elsewhere) > 20 and traffic["rerouted"] > 0
    # an alert fired: the channel's success SLO, evaluated at drill speed
    assert any(a.startswith("slo_channel_call_success_sandbox_a") for a in plat["alerts_fired"])
    # after the fault, compensation and reconciliation: nothing lost, doubled or unbalanced
    assert report["still_pending"] == 0
    assert (audit["lost"], audit["doubled"], audit["errors"]) == (0, 0, 0), summary
    assert audit["paid"] > 60 and plat["money_not_returned"] == 0
    assert plat["trial_balance"]["ok"] and plat["trial_balance"]["legs_total"] == {"CNY": 0}
    assert plat["recon"]["checked"] > 0 and plat["recon"]["differences"] == 0
    assert report["status"] == "passed" and all(report["checks"].values())
    # the report is stored and written
    [row] = list_reports(stack.targets(settings).engine)
    assert (row["name"], row["status"], row["lost"], row["doubled"]) == (
        "channel-failure",
        "passed",
        0,
        0,
    )
    assert json.loads(Path(report["json_path"]).read_text())["status"] == "passed"


@pytest.mark.redis
def test_redis_down_drill_fails_fast_then_recovers_and_loses_nothing(pg_url, redis_url, tmp_path):
    """Redis (trade locks, limits, switch pub/sub) unreachable through the fault proxy
    from t+6 s to t+12 s: pays fail fast as 503 ``dependency_unavailable:redis``, the
    ``redis`` breaker opens, payments resume after it, and nothing is lost or doubled."""
    settings = Settings(
        database_url=pg_url,
        redis_url=redis_url,
        var_dir=str(tmp_path / "var"),
        notify_secret_value="drill-secret",
    )
    stack = EmbeddedPlatform(
        settings, EmbeddedOptions(jobs=fast_jobs(FACTOR), sample_interval_s=1.0)
    ).start()
    try:
        assert "redis" in stack.proxies and stack.settings.redis_url != redis_url
        sim = drill_traffic(settings, stack, seed=9, receiver_failure_ratio=0.0)
        drill = BUILTIN["redis-down"].scaled(FACTOR)
        back = time.monotonic() + 120 * FACTOR  # Redis is back 12 s into the drill
        try:
            report = run_drill(
                drill, sim, stack.targets(settings), target="redis", time_factor=FACTOR, settle_s=90
            )
        finally:
            sim.stop()
        paid_after = [r for r in sim.ledger if r.state in ("paid", "confirmed") and r.since > back]
    finally:
        stack.stop()
    plat, audit, traffic = report["platform"], report["audit"], report["traffic"]
    summary = json.dumps({k: report.get(k) for k in ("checks", "audit", "traffic", "steps")})
    assert [s["params"] for s in report["steps"]] == [{"down": True}, {"down": False}], summary
    assert not any("error" in s for s in report["steps"]) and not report["undo_errors"]
    # while it was down: refused fast and named, the breaker opened
    assert traffic["refusals"].get("pay:dependency_unavailable:redis", 0) > 0, summary
    assert "redis" in plat["breakers_opened"], summary
    # after it came back, payments went through again
    assert len(paid_after) > 5, summary
    assert audit["paid"] > 40, summary
    # and nothing was lost, doubled or left unbalanced
    assert report["still_pending"] == 0
    assert (audit["lost"], audit["doubled"], audit["errors"]) == (0, 0, 0), summary
    assert plat["trial_balance"]["ok"] and plat["trial_balance"]["legs_total"] == {"CNY": 0}
    assert plat["recon"]["differences"] == 0 and report["status"] == "passed", summary


def test_db_slow_drill_slows_every_round_trip_and_loses_nothing(platform):
    """Every database round trip 200 ms slower (the fault proxy) from t+6 s to t+18 s:
    the pay link slows down but keeps its money straight, and speeds up again after."""
    settings, stack = platform
    assert "database" in stack.proxies
    readyz = f"{stack.settings.api_url}/readyz"
    probes: list[tuple[float, float]] = []  # (monotonic at start, seconds) of one DB ping
    stop = threading.Event()

    def probe() -> None:
        while not stop.wait(0.5):
            t0 = time.monotonic()
            httpx.get(readyz, timeout=10).raise_for_status()
            probes.append((t0, time.monotonic() - t0))

    sim = drill_traffic(settings, stack, seed=10, receiver_failure_ratio=0.0)
    drill = BUILTIN["db-slow"].scaled(FACTOR)
    start = time.monotonic()
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        report = run_drill(
            drill, sim, stack.targets(settings), target="database", time_factor=FACTOR, settle_s=90
        )
        stop.wait(4)  # a few pings after the drill's settle, once any backlog has drained
    finally:
        stop.set()
        prober.join(timeout=15)
        sim.stop()
    plat, audit = report["platform"], report["audit"]
    summary = json.dumps({k: report.get(k) for k in ("checks", "audit", "traffic", "steps")})
    assert [s["params"] for s in report["steps"]] == [{"latency_ms": 200.0}, {"latency_ms": 0.0}], (
        summary
    )
    assert not any("error" in s for s in report["steps"]) and not report["undo_errors"]
    # a database ping took the added 200 ms while the fault was on, and not after it
    slow = [d for t, d in probes if start + 7 < t < start + 17]
    # the first pings after the undo queue behind the backlog the slow spell built up;
    # the last ones show the database fast again
    after = [d for t, d in probes if start + 20 < t][-6:]
    assert slow and min(slow) >= 0.2, (slow, summary)
    assert len(after) >= 3 and sorted(after)[len(after) // 2] < 0.2, (after, summary)
    # payments went on, slower, and nothing was lost, doubled or left unbalanced
    assert audit["paid"] > 40, summary
    assert report["still_pending"] == 0
    assert (audit["lost"], audit["doubled"], audit["errors"]) == (0, 0, 0), summary
    assert plat["trial_balance"]["ok"] and plat["trial_balance"]["legs_total"] == {"CNY": 0}
    assert plat["recon"]["differences"] == 0 and report["status"] == "passed", summary


def test_simulate_cli_reports_a_drill_that_cannot_apply(tmp_path):
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("PAYWATCH_REDIS_URL", None)
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "simulate",
            "--drill",
            "redis-down",
            "--receiver-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 3, got.stderr[-2000:]
    assert "NOT_APPLICABLE" in got.stdout and "no Redis is configured" in got.stdout
    saved = list((tmp_path / "var" / "drills").glob("*-redis-down.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["status"] == "not_applicable"


@pytest.mark.redis
def test_drill_grade_audit_cli_judges_the_edges_of_one_dependency(pg_url, redis_url, tmp_path):
    """``paywatch drill grade-audit --only channel.SANDBOX_B`` at 4 s per fault: the
    platform in the process, the channel failed, its edges judged and printed, the report
    stored; exit 0 (no grade contradicted, nothing lost or doubled)."""
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": pg_url,
        "PAYWATCH_REDIS_URL": redis_url,
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }
    argv = ["drill", "grade-audit", "--only", "channel.SANDBOX_B", "--seconds-per-fault", "4"]
    got = subprocess.run(
        [sys.executable, "-m", "runtime.cli", *argv, "--settle", "30", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = got.stdout
    assert got.returncode == 0, (out, got.stderr[-3000:])
    assert "grade audit (4s per fault): PASSED" in out, out
    for caller in ("link.pay", "link.refund"):
        assert f"confirmed      {caller} -> channel.SANDBOX_B (strong)" in out, out
    assert "contradicted 0" in out and "lost 0, doubled 0" in out, out
    from paycore.db.engine import create_engine_from_url

    engine = create_engine_from_url(pg_url)
    try:
        [row] = list_reports(engine)
    finally:
        engine.dispose()
    assert (row["name"], row["status"], row["target"]) == (
        "grade-audit",
        "passed",
        "channel.SANDBOX_B",
    )
    assert f"(id {row['id']})" in out


def test_drill_grade_audit_cli_refuses_a_dependency_the_map_does_not_have(tmp_path):
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("PAYWATCH_REDIS_URL", None)
    got = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "drill", "grade-audit", "--only", "loyalty"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 2, got.stderr[-2000:]
    assert "error: not a dependency of the map: loyalty" in got.stderr
    assert "Traceback" not in got.stderr and not (tmp_path / "var" / "drills").exists()
