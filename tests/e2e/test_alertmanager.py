"""paywatch's alerts in a REAL Alertmanager (0.25, the Debian package), started by the test.

Proves the client behaves as Prometheus does towards Alertmanager: alerts carry the
routing labels and links; after a restart that lost Alertmanager's storage they are back
within the re-send interval; when paywatch stops re-sending (its worker died) they end
after ``endsAt``; a resolved notice ends them at once. Short intervals (2 s re-send,
6 s window) stand in for the defaults (60 s, 240 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_http

from alerts import AlertEngine, AlertmanagerNotifier, QuerySpec, ThresholdRule
from collectors.query import MetricsQuery, Series

RESEND, WINDOW = 2.0, 6.0
CONFIG = """\
route:
  receiver: blackhole
  group_by: [alertname, service, env]
receivers:
  - name: blackhole
"""


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus-alertmanager missing under CI")
        pytest.skip("prometheus-alertmanager not installed")
    return found


class Alertmanager:
    """One Alertmanager process on a fixed port; :meth:`restart` loses its storage."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary, self.tmp = binary, tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "am.yml").write_text(CONFIG)
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        storage = self.tmp / f"storage-{self.runs}"  # a new, empty storage dir each time
        storage.mkdir()
        log = (self.tmp / f"am-{self.runs}.log").open("w")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.tmp / 'am.yml'}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/-/ready", self.proc, timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def alerts(self) -> list[dict]:
        """The alerts Alertmanager holds as active (ended ones are not listed)."""
        resp = httpx.get(self.url + "/api/v2/alerts", timeout=5)
        resp.raise_for_status()
        return [a for a in resp.json() if a["labels"].get("alertname") == "breaker_open"]


class Gauge(MetricsQuery):
    """The breaker state, set by the test (only ``latest`` is used by the rule)."""

    def __init__(self) -> None:
        self.value = 2.0

    def latest(self, metric, *, at, match=None, by=(), max_age=300.0, agg="sum"):
        return [Series({"resource": "redis"}, self.value)]

    def _unused(self, *a, **kw):
        raise NotImplementedError

    rate = count = ratio = quantile = range = _unused


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Alertmanager]:
    server = Alertmanager(alertmanager_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def until(check: Callable[[], bool], timeout: float, tick: Callable[[], None] = lambda: None):
    """Seconds until ``check()`` holds, calling ``tick`` every 0.2 s; fail after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        tick()
        if check():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def test_alerts_survive_a_restart_expire_without_resends_and_resolve_at_once(
    am: Alertmanager, sqlite_url: str
) -> None:
    from paycore import Database

    db = Database(sqlite_url)
    query = Gauge()
    notifier = AlertmanagerNotifier(
        am.url,
        console_url="https://console.example",
        runbook_base_url="https://git.example/paywatch/docs/runbook.md",
        service="paywatch",
        env="e2e",
        resend_interval=RESEND,
        resolve_window=WINDOW,
        retries=0,
    )
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
        annotations={"summary": "breaker open", "runbook": "docs/runbook.md#breaker_open"},
    )
    engine = AlertEngine(db.engine, query, [rule], notifier=notifier)

    def evaluate() -> None:
        engine.evaluate()

    try:
        # fired through the notifier: in Alertmanager with the routing labels and links
        until(lambda: bool(am.alerts()), 30, evaluate)
        (a,) = am.alerts()
        assert a["labels"]["service"] == "paywatch" and a["labels"]["env"] == "e2e"
        assert a["labels"]["severity"] == "page" and a["labels"]["resource"] == "redis"
        assert a["generatorURL"].startswith("https://console.example/oncall_alerts?alert=")
        assert a["annotations"]["runbook_url"] == (
            "https://git.example/paywatch/docs/runbook.md#breaker_open"
        )
        assert a["status"]["state"] == "active"

        # Alertmanager restarts with an empty storage: back within the re-send interval
        am.stop()
        am.start()
        assert am.alerts() == []
        back = until(lambda: bool(am.alerts()), 30, evaluate)
        assert back <= RESEND + 3.0, back  # the loaded CI machine: a little slack

        # the worker dies (no more re-sends): Alertmanager ends the alert after endsAt
        evaluate()
        died = time.monotonic()
        time.sleep(RESEND + 0.5)
        assert am.alerts(), "ended before its endsAt"
        until(lambda: not am.alerts(), WINDOW + 10)
        assert time.monotonic() - died >= WINDOW - 1.0

        # firing again, then resolved: a resolved notice ends it at once
        until(lambda: bool(am.alerts()), 30, evaluate)
        query.value = 0.0
        evaluate()
        gone = until(lambda: not am.alerts(), 5)
        assert gone < WINDOW - 2.0
        assert engine.alerts(("resolved",))[0].rule == "breaker_open"
    finally:
        notifier.close()
        db.dispose()


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "alertmanager.example.yml"


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ("env=prod severity=page alertname=breaker_open", "paywatch-oncall-pager"),
        ("env=prod severity=ticket alertname=recon_differences", "paywatch-tickets"),
        ("env=dev severity=page alertname=breaker_open", "paywatch-chat"),
    ],
)
def test_the_example_routing_config_is_valid_and_routes_by_env_and_severity(
    labels: str, receiver: str
) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("amtool (package prometheus-alertmanager) missing under CI")
        pytest.skip("amtool not installed")
    check = subprocess.run(
        [amtool, "check-config", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    routed = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={EXAMPLE}", "service=paywatch"]
        + labels.split(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert routed.returncode == 0 and routed.stdout.split() == [receiver], routed.stderr
