"""Switch changes reach another process within a second (Redis pub/sub, or polling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest

CHILD = textwrap.dedent("""
    import json, sys, time
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings
    from paycore import CreateTrade, PayRequest, PayTool

    settings = Settings.from_env()
    platform = build_platform(settings, channels=False).start()
    core, guard = platform.paycore, platform.stability.guard
    mid = sys.argv[1]
    print(json.dumps({"ready": True}), flush=True)
    seen_degraded = False
    deadline = time.time() + 40
    i = 0
    while time.time() < deadline:
        i += 1
        no = f"p{i}"
        core.trades.create(mid, CreateTrade(no, "instant", 100, "CNY", "u1", "goods",
                                            "physical", "SANDBOX_A"))
        core.payments.pay(mid, PayRequest(no, (PayTool("channel", 100),)))
        degraded = guard.stats.count("risk", "degraded") > 0
        if degraded and not seen_degraded:
            seen_degraded = True
            print(json.dumps({"degraded_at": time.time(), "payments": i}), flush=True)
        if seen_degraded and "risk" not in guard.snapshot.degraded:
            print(json.dumps({"restored_at": time.time()}), flush=True)
            break
        time.sleep(0.01)
    platform.close()
""")


@pytest.mark.parametrize("backend", ["polling", "redis"])
def test_degrading_a_weak_dependency_reaches_another_process_within_a_second(
    backend, pg_url, request
):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    settings = Settings(
        database_url=pg_url,
        redis_url=redis_url,
        pay_orgs=("SANDBOX_A",),
        channel_secrets={"SANDBOX_A": "s"},
    )
    platform = build_platform(settings, channels=False)
    mid = platform.paycore.merchants.onboard(
        "prop shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"]
    ).merchant.merchant_id
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": pg_url,
        "PAYWATCH_PAY_ORGS": "SANDBOX_A",
        "PAYWATCH_CHANNEL_SECRETS": "SANDBOX_A=s",
    }
    if redis_url:
        env["PAYWATCH_REDIS_URL"] = redis_url
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mid],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert json.loads(child.stdout.readline()) == {"ready": True}, child.stderr.read()
        time.sleep(1.0)  # let it run on the normal path first
        switches = platform.stability.switches
        flipped = time.time()
        sw = switches.propose(
            "degrade", "risk", actor="sre", reason="risk p99 high", ttl=timedelta(minutes=5)
        )
        assert sw.status == "active"
        raw = child.stdout.readline()
        assert raw, child.stderr.read()[-3000:]
        line = json.loads(raw)
        lag = line["degraded_at"] - flipped
        assert 0 <= lag < 1.0, lag
        reverted = time.time()
        switches.revert(sw.id, actor="sre", reason="recovered")
        line = json.loads(child.stdout.readline())
        assert 0 <= line["restored_at"] - reverted < 1.0
    finally:
        child.kill()
        child.wait(10)
        platform.close()


def test_strong_switch_applies_only_after_approval_and_fails_fast_with_503(pg_url):
    from paycore import CreateTrade, PayRequest, PayTool
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings
    from stability.errors import DependencyFailed

    settings = Settings(
        database_url=pg_url, pay_orgs=("SANDBOX_A",), channel_secrets={"SANDBOX_A": "s"}
    )
    platform = build_platform(settings, channels=False).start()
    core, runtime = platform.paycore, platform.stability
    mid = core.merchants.onboard(
        "s", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"]
    ).merchant.merchant_id

    def pay(no):
        core.trades.create(
            mid, CreateTrade(no, "instant", 100, "CNY", "u1", "goods", "physical", "SANDBOX_A")
        )
        return core.payments.pay(mid, PayRequest(no, (PayTool("channel", 100),)))

    try:
        sw = runtime.switches.propose(
            "degrade",
            "channel.SANDBOX_A",
            actor="alice",
            reason="channel incident",
            ttl=timedelta(minutes=5),
        )
        assert sw.status == "pending"
        runtime.watcher.refresh()
        assert pay("a1").status == "processing"  # not applied without approval
        runtime.switches.approve(sw.id, approver="bob")
        runtime.watcher.refresh()
        with pytest.raises(DependencyFailed) as info:
            pay("a2")
        assert info.value.public_code == "dependency_unavailable:channel.SANDBOX_A"
        assert core.trades.get(mid, "a2").status == "created"  # nothing paid, nothing lost
    finally:
        platform.close()


def test_expired_switch_reverts_in_running_processes(pg_url):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    settings = Settings(
        database_url=pg_url, pay_orgs=("SANDBOX_A",), channel_secrets={"SANDBOX_A": "s"}
    )
    platform = build_platform(settings, channels=False).start()
    runtime = platform.stability
    try:
        sw = runtime.switches.propose(
            "degrade", "notification", actor="sre", reason="drill", ttl=timedelta(seconds=1)
        )
        deadline = time.time() + 1
        while "notification" not in runtime.guard.snapshot.degraded and time.time() < deadline:
            time.sleep(0.02)
        assert "notification" in runtime.guard.snapshot.degraded
        deadline = time.time() + 3
        while "notification" in runtime.guard.snapshot.degraded and time.time() < deadline:
            time.sleep(0.05)
        assert "notification" not in runtime.guard.snapshot.degraded
        assert runtime.switches.get(sw.id).status == "expired"
    finally:
        platform.close()
