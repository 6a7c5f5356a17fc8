"""What the on-call view tests share: the real ``console/app.py`` under AppTest over a migrated
SQLite database with users, a link to the drill-down, what a run rendered, alerts and
sampled traffic put in the database, a closed port."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "console" / "app.py")
PASSWORD = "correct-horse-battery"
HOSTILE = ("![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>")


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def oncall_db(sqlite_url, tmp_path, monkeypatch):
    """A migrated SQLite database with a viewer and an operator; env points the console at
    it (the metrics source is the database's store unless a test sets Prometheus)."""
    from console.auth import create_user

    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    for name in ("PAYWATCH_PROMETHEUS_URL", "PAYWATCH_REDIS_URL", "PAYWATCH_PAY_ORGS"):
        monkeypatch.delenv(name, raising=False)
    engine = sa.create_engine(url)
    create_user(engine, "vera", PASSWORD, "viewer")
    create_user(engine, "olive", PASSWORD, "operator")
    yield engine
    engine.dispose()


def _app(user: str, role: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["user"] = {"username": user, "role": role}
    return at


def _link(at: AppTest, **params: str) -> AppTest:
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page("pages/oncall_link.py")
    return at.run()


def _markdown(at: AppTest) -> list[str]:
    return [str(m.value) for m in at.markdown]


def _everything(at: AppTest) -> str:
    """Every text element's value (titles, headers, markdown, captions, alerts, metrics)."""
    parts = [
        e.value
        for e in (
            *at.title,
            *at.subheader,
            *at.markdown,
            *at.caption,
            *at.warning,
            *at.error,
            *at.info,
            *at.success,
        )
    ]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def put_alert(
    engine,
    rule: str,
    labels: dict,
    *,
    state: str = "firing",
    severity: str = "page",
    summary: str = "",
    runbook: str = "",
    since: float | None = None,
) -> str:
    """One row as the alert engine stores it (labels carry alertname and severity)."""
    full = {**labels, "alertname": rule, "severity": severity}
    fp = f"fp-{rule}-{len(json.dumps(full))}-{time.monotonic_ns()}"
    since = time.time() - 14 * 60 - 5 if since is None else since
    notes = {k: v for k, v in (("summary", summary), ("runbook", runbook)) if v}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into alert_states (fingerprint, rule, labels, annotations, severity, state,"
                " value, active_since, fired_at, resolved_at, last_eval) values (:fp, :rule,"
                " :labels, :notes, :sev, :state, 0.2, :since, :fired, null, :now)"
            ),
            {
                "fp": fp,
                "rule": rule,
                "labels": json.dumps(dict(sorted(full.items()))),
                "notes": json.dumps(notes),
                "sev": severity,
                "state": state,
                "since": since,
                "fired": since if state == "firing" else None,
                "now": time.time(),
            },
        )
    return fp


def seed_traffic(engine, *, org: str, points: int, every: float = 5.0, calls: int = 4) -> None:
    """Pay traffic through ``org`` sampled into the database's time-series store, as an API
    process's sampler writes it (``points`` samples ``every`` seconds up to now)."""
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics, Sampler, TimeSeriesStore

    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    sampler = Sampler(reg, TimeSeriesStore(engine), instance="api:test:1", interval=every)
    now = time.time()
    for k in range(points):
        for _ in range(calls):
            m.observe("pay", "ok", pay_org=org, seconds=0.04)
            m.observe("trade_create", "ok", pay_org=org, seconds=0.01)
        sampler.sample_once(now=now - (points - 1 - k) * every)
