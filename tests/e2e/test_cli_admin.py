"""Control from scripts (issue 20, point 8): ``paywatch admin`` and the HTTP admin API against
a running platform (``EmbeddedPlatform``: the pay API's server serves ``/admin/v1``) on
PostgreSQL. A map edit reaches the running guards, of this platform and of another one over
the same database, within a couple of seconds and without a restart; a switch applied and
approved from the command line reaches the guard the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

PASSWORD = "correct horse battery"
USERS = {"ada": "admin", "olga": "operator", "oscar": "operator"}


@pytest.fixture(params=["polling", "redis"])
def running(request, pg_url, tmp_path):
    from console.users import create_user
    from runtime.bootstrap import build_platform
    from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
    from runtime.settings import Settings

    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = Settings(
        database_url=pg_url,
        redis_url=redis_url,
        var_dir=str(tmp_path / "var"),
        pay_orgs=("SANDBOX_A", "SANDBOX_B"),
    )
    stack = EmbeddedPlatform(settings, EmbeddedOptions(proxies=False)).start()
    other = build_platform(settings, channels=False).start()  # another process's guard
    for name, role in USERS.items():
        create_user(stack.platform.db.engine, name, PASSWORD, role)
    try:
        yield stack, other
    finally:
        other.close()
        stack.stop()


def _wait(check, seconds: float = 5.0) -> float:
    """Seconds until ``check()`` holds (fails after ``seconds``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not seen in time"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_map_edit_through_the_api_reaches_running_guards_within_seconds(running):
    stack, other = running
    api = f"{stack.settings.api_url}/admin/v1"
    with httpx.Client(base_url=api, timeout=10) as http:
        token = http.post("/login", json={"username": "ada", "password": PASSWORD}).json()["token"]
        guards = [stack.platform.stability.guard, other.stability.guard]
        assert {g.map.edge("link.pay", "risk").grade for g in guards} == {"weak"}
        edge = {"grade": "strong", "timeout_ms": 777, "retries": 0, "reason": "risk is a must"}
        answer = http.put(
            "/map/edges/link.pay/risk", json=edge, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
    took = [
        _wait(lambda g=g: g.timeout_s("link.pay", "risk") == 0.777, seconds=3.0) for g in guards
    ]
    assert all(g.map.edge("link.pay", "risk").grade == "strong" for g in guards)
    print(f"map edit seen by the guards after {[round(t, 3) for t in took]} s")
    assert max(took) < 2.0, took


def cli(args, env):
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_paywatch_admin_drives_switches_approvals_and_the_map(running, tmp_path):
    import json

    stack, other = running
    base = os.environ | {"PAYWATCH_ADMIN_URL": f"{stack.settings.api_url}/admin/v1"}
    env = {u: base | {"PAYWATCH_ADMIN_TOKEN_FILE": str(tmp_path / f"{u}.token")} for u in USERS}
    wrong = cli(["login", "--user", "olga"], env["olga"] | {"PAYWATCH_ADMIN_PASSWORD": "nope-nope"})
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: unauthenticated")
    assert "nope-nope" not in wrong.stdout + wrong.stderr
    no_token = cli(["switch", "list"], env["olga"])
    assert no_token.returncode == 2 and "unauthenticated" in no_token.stderr
    for user in USERS:
        done = cli(["login", "--user", user], env[user] | {"PAYWATCH_ADMIN_PASSWORD": PASSWORD})
        assert done.returncode == 0, done.stderr
        assert oct((tmp_path / f"{user}.token").stat().st_mode & 0o777) == "0o600"
        assert "token" not in json.loads(done.stdout)
    applied = cli(
        [
            "switch",
            "apply",
            "force_breaker",
            "channel.SANDBOX_A",
            "--state",
            "forced_open",
            "--reason",
            "A is down",
            "--ttl",
            "30m",
        ],
        env["olga"],
    )
    assert applied.returncode == 0, applied.stderr
    rec = json.loads(applied.stdout)
    assert rec["status"] == "pending"
    mine = cli(["switch", "approve", str(rec["id"])], env["olga"])
    assert mine.returncode == 2 and "approval_error" in mine.stderr
    approved = cli(["switch", "approve", str(rec["id"])], env["oscar"])
    assert approved.returncode == 0 and json.loads(approved.stdout)["status"] == "active"
    for g in (stack.platform.stability.guard, other.stability.guard):
        _wait(lambda g=g: g.snapshot.forced.get("channel.SANDBOX_A") == "forced_open", 3.0)
    edge = ["map", "edge", "set", "link.notify", "notification", "--grade", "weak"]
    edge += ["--timeout-ms", "444", "--fallback", "outbox: deliver later", "--reason", "tune"]
    assert "forbidden" in cli(edge, env["olga"]).stderr
    assert cli(edge, env["ada"]).returncode == 0
    _wait(lambda: other.stability.guard.timeout_s("link.notify", "notification") == 0.444, 3.0)
    listed = json.loads(cli(["switch", "list"], env["oscar"]).stdout)["switches"]
    assert [s["id"] for s in listed] == [rec["id"]]
    reverted = cli(["switch", "revert", str(rec["id"]), "--reason", "A is back"], env["oscar"])
    assert reverted.returncode == 0
    assert cli(["logout"], env["olga"]).returncode == 0
    assert not (tmp_path / "olga.token").exists()


def test_paywatch_admin_runs_a_plan_and_previews_a_switch(running, tmp_path):
    import json

    stack, _ = running
    api = f"{stack.settings.api_url}/admin/v1"
    base = os.environ | {"PAYWATCH_ADMIN_URL": api}
    env = {u: base | {"PAYWATCH_ADMIN_TOKEN": _token(api, u)} for u in ("olga", "oscar")}
    name = "channel SANDBOX_B outage"
    plan = {
        "steps": [{"kind": "force_breaker", "target": "channel.SANDBOX_B", "state": "forced_open"}]
    }
    with httpx.Client(base_url=api, timeout=10) as http:
        auth = {u: {"Authorization": f"Bearer {env[u]['PAYWATCH_ADMIN_TOKEN']}"} for u in env}
        assert http.put(f"/plans/{name}", json=plan, headers=auth["olga"]).is_success
        assert http.post(f"/plans/{name}/review", headers=auth["oscar"]).is_success
    preview = cli(
        ["switch", "apply", "degrade", "risk", "--reason", "r", "--ttl", "5m", "--dry-run"],
        env["olga"],
    )
    assert preview.returncode == 0 and json.loads(preview.stdout)["needs_approval"] is False
    assert json.loads(cli(["switch", "list"], env["olga"]).stdout)["switches"] == []
    started = cli(["plan", "run", name, "--reason", "B down", "--ttl", "1h"], env["olga"])
    assert started.returncode == 0, started.stderr
    run = json.loads(started.stdout)
    waiting = json.loads(cli(["approvals"], env["oscar"]).stdout)["plans"]
    assert [(p["id"], p["you_may_approve"]) for p in waiting] == [(run["id"], True)]
    approved = cli(["plan", "approve", str(run["id"])], env["oscar"])
    assert approved.returncode == 0 and json.loads(approved.stdout)["status"] == "active"
    guard = stack.platform.stability.guard
    _wait(lambda: guard.snapshot.forced.get("channel.SANDBOX_B") == "forced_open", 3.0)
    reverted = cli(["plan", "revert", str(run["id"]), "--reason", "B is back"], env["olga"])
    assert reverted.returncode == 0 and json.loads(reverted.stdout)["status"] == "reverted"
    _wait(lambda: "channel.SANDBOX_B" not in guard.snapshot.forced, 3.0)
    whoami = json.loads(cli(["whoami"], env["oscar"]).stdout)
    assert whoami == {"username": "oscar", "role": "operator"}


def _token(api: str, user: str) -> str:
    with httpx.Client(base_url=api, timeout=10) as http:
        answer = http.post("/login", json={"username": user, "password": PASSWORD})
    return str(answer.json()["token"])


def test_paywatch_up_names_the_admin_api(tmp_path):
    from runtime.settings import Settings
    from runtime.up import AllInOne, UpOptions

    stack = AllInOne(
        Settings(var_dir=str(tmp_path / "var")), UpOptions(api_port=0, console=False), env={}
    )
    assert f"admin API {stack.settings.api_url}/admin/v1" in stack.banner()
