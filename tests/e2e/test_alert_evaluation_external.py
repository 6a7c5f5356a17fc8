"""``PAYWATCH_ALERT_EVALUATION`` against the real engines (Debian's Alertmanager 0.25
and Prometheus 2.42, started by the tests): the console lists the alerts Alertmanager
holds when Prometheus evaluates, and the cross-check counts where paywatch's engine and
Prometheus's ``ALERTS`` disagree."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_http
from prometheus_client import CollectorRegistry
from test_alertmanager import Alertmanager, Gauge, alertmanager_binary, until

from alerts import AlertEngine, QuerySpec, ThresholdRule
from alerts.external import firing_alerts, prometheus_alerts
from console.views.alert_ops import external_rows
from paycore import Database
from runtime.observability import alert_job
from runtime.settings import Settings


@pytest.fixture
def prometheus_bin() -> str:
    exe = shutil.which("prometheus")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus missing under CI (the Debian package 'prometheus')")
        pytest.skip("prometheus not installed (the Debian package 'prometheus')")
    return exe


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Alertmanager]:
    server = Alertmanager(alertmanager_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


ROOT = Path(__file__).resolve().parents[2]


def _post(am: Alertmanager, summary: str) -> None:
    """An alert posted into Alertmanager as Prometheus would (five minutes' endsAt)."""
    now = datetime.now(UTC)
    alert = {
        "labels": {
            "alertname": "breaker_open",
            "severity": "page",
            "resource": "redis",
            "service": "paywatch",
        },
        "annotations": {"summary": summary},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.example/graph",
    }
    httpx.post(am.url + "/api/v2/alerts", json=[alert], timeout=5).raise_for_status()


def test_the_console_lists_alertmanagers_alerts_when_prometheus_evaluates(
    am: Alertmanager,
) -> None:
    _post(am, summary="breaker for redis has kept calls away for a minute")
    until(lambda: bool(am.alerts()), 30)

    settings = Settings(alertmanager_url=am.url, alert_evaluation="prometheus")
    found = firing_alerts(settings.alertmanager_url, settings.prometheus_url)
    rows = external_rows(found, time.time())
    assert len(rows) == 1
    (row,) = rows
    assert row["alert"] == "breaker_open" and row["severity"] == "page"
    assert row["resource"].startswith("resource=redis")
    assert row["state"] == "active" and row["from"] == "alertmanager"
    assert row["summary"] == "breaker for redis has kept calls away for a minute"
    assert row["since"].endswith("UTC")


def test_the_alerts_page_shows_them(
    am: Alertmanager, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real page (``console/app.py`` under AppTest) with evaluation handed over."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    _post(am, summary="pay burning its budget")
    until(lambda: bool(am.alerts()), 30)
    for name, value in {
        "DATABASE_URL": sqlite_url,
        "VAR_DIR": str(tmp_path / "var"),
        "ALERT_EVALUATION": "prometheus",
        "ALERTMANAGER_URL": am.url,
    }.items():
        monkeypatch.setenv(f"PAYWATCH_{name}", value)
    for name in ("PAYWATCH_PROMETHEUS_URL", "PAYWATCH_REDIS_URL", "PAYWATCH_PAY_ORGS"):
        monkeypatch.delenv(name, raising=False)
    import sqlalchemy as sa

    from console.auth import create_user

    users = sa.create_engine(sqlite_url)
    create_user(users, "vera", "correct-horse-battery", "viewer")
    users.dispose()
    at = AppTest.from_file(str(ROOT / "console" / "app.py"), default_timeout=60)
    at.session_state["user"] = {"username": "vera", "role": "viewer"}
    at.run()
    at.switch_page("pages/oncall_alerts.py")
    at.run()
    assert not at.exception, at.exception
    assert "Alerts evaluated by Prometheus" in [s.value for s in at.subheader]
    frame = next(d.value for d in at.dataframe if "from" in d.value.columns)
    assert list(frame["alert"]) == ["breaker_open"]
    assert list(frame["summary"]) == ["pay burning its budget"]


RULES = """\
groups:
  - name: paywatch
    rules:
      - alert: breaker_open
        expr: vector(1)
        labels: {severity: page}
"""


@pytest.fixture
def prometheus(tmp_path: Path, prometheus_bin: str) -> Iterator[str]:
    (tmp_path / "rules.yml").write_text(RULES)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{tmp_path / 'rules.yml'}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", proc, timeout=60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_cross_check_counts_a_disagreement_with_prometheus(
    prometheus: str, sqlite_url: str
) -> None:
    until(lambda: [a.name for a in prometheus_alerts(prometheus)] == ["breaker_open"], 60)
    db = Database(sqlite_url)
    query = Gauge()
    query.value = 0.0  # paywatch's engine sees the breaker closed: it disagrees
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
    )
    engine = AlertEngine(db.engine, query, [rule])
    registry = CollectorRegistry()
    settings = Settings(prometheus_url=prometheus, alert_evaluation="cross-check")
    job = alert_job(db.engine, query, settings, registry=registry, build=lambda: engine)

    def counted(side: str) -> float:
        value = registry.get_sample_value(
            "paywatch_alert_crosscheck_disagreements_total", {"only_in": side}
        )
        return value or 0.0

    try:
        diff = job()
        assert diff is not None and diff.prometheus_only == {"breaker_open"}
        assert not diff.paywatch_only and counted("prometheus") == 1.0

        query.value = 2.0  # now both fire: they agree, nothing more is counted
        diff = job()
        assert diff is not None and not diff
        assert counted("prometheus") == 1.0 and counted("paywatch") == 0.0
        assert [a.rule for a in engine.active()] == ["breaker_open"]  # recorded
    finally:
        db.dispose()
