"""The Drills page: its knob controls start at the sandbox's values, and its panels fail
one by one (split from test_console_ops_pages.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from conftest import LiveServer, free_port

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.audit import recent  # noqa: E402

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
ADMIN = "drill-admin-token"
#: above 2^53: a JavaScript number cannot hold it (it would show ...048 as ...050)
BIG = 387985099441922048
HOSTILE = ("![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>")
CSV_HEAD = "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"


from ops_page_app import _assert_inert, _button, _has_button, _ok, _table, _texts  # noqa: E402


# -- Drills: the knob controls start at the sandbox's values; panels fail alone -------------
@pytest.fixture
def drill_env(sqlite_url, tmp_path, monkeypatch):
    """The console's environment (migrated SQLite, var dir) and a real sandbox channel."""
    from console.auth import create_user
    from simulator.sandbox import SandboxConfig, create_sandbox_app

    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PAYWATCH_SANDBOX_ADMIN_TOKEN", ADMIN)
    for name in ("PAYWATCH_PROMETHEUS_URL", "PAYWATCH_REDIS_URL", "PAYWATCH_PAY_ORGS"):
        monkeypatch.delenv(name, raising=False)
    engine = sa.create_engine(url)
    create_user(engine, "otto", "correct-horse-battery", "operator")  # read on every run
    config = SandboxConfig(secrets={o: f"secret-{o}" for o in ORGS}, admin_token=ADMIN)
    with LiveServer(create_sandbox_app(config)) as sandbox:
        monkeypatch.setenv("PAYWATCH_SANDBOX_URL", sandbox.url)
        yield SimpleNamespace(engine=engine, sandbox=sandbox.url)
    engine.dispose()


def _drills(user: str, role: str) -> None:
    """The Drills page script as st.navigation runs it, for a signed-in user."""
    import runpy

    import streamlit as st

    from console.pages import PAGES_DIR

    st.session_state["user"] = {"username": user, "role": role}
    runpy.run_path(str(PAGES_DIR / "sre_drills.py"))


def _drills_app(query: dict[str, str] | None = None, user: str = "otto") -> AppTest:
    at = AppTest.from_function(_drills, args=(user, "operator"), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def _knobs(base: str, org: str, **changes: float) -> dict:
    head = {"X-Sandbox-Admin": ADMIN}
    if changes:
        r = httpx.put(f"{base}/admin/knobs/{org}", json=changes, headers=head, timeout=5)
        assert r.status_code == 200, r.text
    return httpx.get(f"{base}/admin/knobs", headers=head, timeout=5).json()[org]


def _controls(at: AppTest) -> dict[str, float]:
    values = {s.key: s.value for s in at.slider}
    values |= {n.key: n.value for n in at.number_input}
    return {k.removeprefix("drill_"): v for k, v in values.items() if k.startswith("drill_")}


def test_drill_controls_start_at_the_sandbox_knobs_and_follow_it(drill_env):
    """Old code: every slider started at 0 and the latency at 5 whatever the sandbox ran."""
    sb = drill_env.sandbox
    _knobs(sb, "SANDBOX_B", error_rate=0.35, timeout_rate=0.1, latency_ms=120.0, fail_rate=0.2)
    at = _drills_app({"org": "SANDBOX_B"})
    _ok(at)
    assert _controls(at) == {
        "error_rate": 0.35,
        "timeout_rate": 0.1,
        "latency_ms": 120.0,
        "fail_rate": 0.2,
    }
    # an unsaved edit stays while the sandbox stays as it was
    at.slider(key="drill_error_rate").set_value(0.5).run()
    _ok(at)
    assert _controls(at)["error_rate"] == 0.5 and _knobs(sb, "SANDBOX_B")["error_rate"] == 0.35
    _button(at, "drill_apply").click().run()
    _ok(at)
    assert _knobs(sb, "SANDBOX_B")["error_rate"] == 0.5
    assert any("Knobs applied to SANDBOX\\_B" in s.value for s in at.success)  # survived rerun
    assert _controls(at)["error_rate"] == 0.5
    audit = recent(drill_env.engine, action="drill.knobs")
    assert audit[0]["actor"] == "otto" and audit[0]["target"] == "SANDBOX_B"
    assert audit[0]["detail"]["ok"] is True and audit[0]["detail"]["changes"]["error_rate"] == 0.5
    # another operator (or a scripted drill) changes the sandbox: the controls follow
    _knobs(sb, "SANDBOX_B", timeout_rate=0.7)
    at.run()
    assert _controls(at)["timeout_rate"] == 0.7
    # another org: its own values
    at.selectbox(key="url_org").select("SANDBOX_A").run()
    _ok(at)
    assert _controls(at) == {
        "error_rate": 0.0,
        "timeout_rate": 0.0,
        "latency_ms": 5.0,
        "fail_rate": 0.0,
    }
    at.selectbox(key="url_org").select("SANDBOX_B").run()
    _button(at, "drill_reset").click().run()
    _ok(at)
    assert _knobs(sb, "SANDBOX_B") == _knobs(sb, "SANDBOX_C")  # every knob back to healthy
    assert _controls(at)["error_rate"] == 0.0
    assert [r["target"] for r in recent(drill_env.engine, action="drill.reset")] == ["SANDBOX_B"]


def test_drills_with_sandbox_and_metrics_down_fail_panel_by_panel(drill_env, monkeypatch):
    """Old code: a traceback (httpx.ConnectError from the metrics source) took the page."""
    from simulator.report import save_report

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PAYWATCH_SANDBOX_URL", closed)
    monkeypatch.setenv("PAYWATCH_PROMETHEUS_URL", closed)
    save_report(
        drill_env.engine,
        {
            "drill": {"name": HOSTILE[0], "summary": HOSTILE[1]},
            "status": "failed",
            "target": HOSTILE[2],
            "reason": HOSTILE[0],
            "time_factor": 1.0,
            "started_at": "2026-11-23T03:00:00+00:00",
            "finished_at": "2026-11-23T03:01:00+00:00",
            "platform": {"recon": {"run_id": BIG}},
        },
    )
    at = _drills_app()
    _ok(at)
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("The sandbox channel is unavailable") for w in warnings), warnings
    assert any(w.startswith("The metrics source is unavailable") for w in warnings), warnings
    assert not at.slider and not _has_button(at, "drill_apply")  # no controls we cannot back
    assert "Traceback" not in "\n".join(_texts(at))
    assert list(_table(at, "lost")["status"]) == ["failed"]  # the database panel still works
    assert any(c.value.startswith("updated ") and "database" in c.value for c in at.caption)
    _assert_inert(at)
    assert f'"{BIG}"' in at.json[0].value  # the full report's 64-bit id: text, not a number
