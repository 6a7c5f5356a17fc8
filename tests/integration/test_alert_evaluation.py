"""``PAYWATCH_ALERT_EVALUATION``: the setting, and what the worker's alert job does in
each mode against a real HTTP receiver standing in for Alertmanager (uvicorn on
127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import pytest
from alert_series import FakeQuery
from conftest import LiveServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts.schema import AlertState
from runtime.errors import SettingsError
from runtime.observability import alert_job
from runtime.settings import Settings


class Receiver:
    """Counts every POST to ``/api/v2/alerts`` (Alertmanager's API)."""

    def __init__(self) -> None:
        self.posts = 0

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.posts += 1
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v2/alerts", self.handle, methods=["POST"])])


@pytest.mark.parametrize(
    ("raw", "mode"),
    [(None, "paywatch"), ("prometheus", "prometheus"), (" Cross-Check ", "cross-check")],
)
def test_the_setting_parses(raw: str | None, mode: str) -> None:
    env = {} if raw is None else {"PAYWATCH_ALERT_EVALUATION": raw}
    assert Settings.from_env(env).alert_evaluation == mode


@pytest.mark.parametrize("raw", ["grafana", "paywatch,prometheus", "0"])
def test_a_bad_value_is_refused_in_one_line(raw: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"PAYWATCH_ALERT_EVALUATION": raw})
    text = str(err.value)
    assert "\n" not in text and "PAYWATCH_ALERT_EVALUATION" in text
    assert "paywatch, prometheus, cross-check" in text


def test_cross_check_without_prometheus_is_refused() -> None:
    settings = Settings(alert_evaluation="cross-check")
    with pytest.raises(SettingsError, match="PAYWATCH_PROMETHEUS_URL"):
        alert_job(None, FakeQuery(), settings)  # type: ignore[arg-type]


def _broken_ledger() -> FakeQuery:
    q = FakeQuery()  # trial_balance_broken fires at once (for: 0)
    q.gauge("paywatch_trial_balance_ok", {}, lambda t: 0.0)
    return q


@pytest.mark.parametrize(("mode", "sends"), [("paywatch", True), ("prometheus", False)])
def test_prometheus_mode_stands_down_and_sends_nothing(
    migrated_db, mode: str, sends: bool, caplog: pytest.LogCaptureFixture
) -> None:
    rx = Receiver()
    with LiveServer(rx.app()) as srv:
        settings = Settings(alertmanager_url=srv.url, alert_evaluation=mode)
        job = alert_job(migrated_db.engine, _broken_ledger(), settings)
        with caplog.at_level(logging.INFO, logger="alerts.external"):
            for _ in range(3):
                job()
    assert (rx.posts > 0) is sends, rx.posts
    with migrated_db.engine.connect() as conn:
        states = conn.execute(AlertState.__table__.select()).all()
    if sends:
        assert any(r.rule == "trial_balance_broken" and r.state == "firing" for r in states)
    else:
        assert states == []  # nothing evaluated, nothing recorded
        said = [r for r in caplog.records if "stands down" in r.getMessage()]
        assert len(said) == 1  # once, not every 30 s
