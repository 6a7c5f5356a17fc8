"""The Dependency map page over real PostgreSQL (AppTest runs the real ``console/app.py``):
guard outcomes that an API process's real guard recorded and sampled into the database's
metric store colour the map, its node and edge tables carry req/s, error ratio and p99, and
the impact query in traffic answers for the resources picked (several at once)."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from live_map_world import merchants_paying, start

pytest.importorskip("streamlit")
from oncall_app import APP, PASSWORD, _everything  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

A, B = "channel.SANDBOX_A", "channel.SANDBOX_B"
RED, GREEN = "#d62728", "#2ca02c"


@pytest.fixture
def map_db(pg_url, tmp_path, monkeypatch):
    from console.auth import create_user

    monkeypatch.setenv("PAYWATCH_DATABASE_URL", pg_url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    for name in ("PAYWATCH_PROMETHEUS_URL", "PAYWATCH_REDIS_URL", "PAYWATCH_PAY_ORGS"):
        monkeypatch.delenv(name, raising=False)
    engine = sa.create_engine(pg_url)
    create_user(engine, "vera", PASSWORD, "viewer")
    create_user(engine, "olive", PASSWORD, "operator")
    yield engine
    engine.dispose()


def _map_page(user: str = "vera", role: str = "viewer") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["user"] = {"username": user, "role": role}
    at.run()
    at.switch_page("pages/oncall_depmap.py")
    return at.run()


def _rows(at: AppTest, column: str) -> list[dict]:
    frame = next(d.value for d in at.dataframe if column in d.value.columns)
    return frame.to_dict("records")


def _edge_colours(at: AppTest) -> dict[str, str]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return {t["name"]: t["line"]["color"] for t in spec["data"] if t.get("mode") == "lines"}


def test_the_map_page_shows_a_failing_channel_red_and_its_impact_in_traffic(map_db, pg_url):
    from stability.depmap_seed import default_map

    t = time.time()
    (api,) = start(map_db, default_map(), "api:1", at=t)
    api.calls(A, ok=55, failed=45)
    api.calls(B, ok=100, failed=0)
    plan = {
        "monly": (["SANDBOX_A"], "SANDBOX_A", 2),
        "mab": (["SANDBOX_A", "SANDBOX_B"], "SANDBOX_A", 2),
        "mb": (["SANDBOX_B"], "SANDBOX_B", 2),
    }
    merchants_paying(pg_url, plan, metrics=api.metrics)
    api.sample(time.time())
    at = _map_page()
    assert not at.exception, at.exception
    nodes = {r["resource"]: r for r in _rows(at, "breaker")}
    assert nodes[A]["status"] == "bad" and nodes[A]["error_ratio"] == pytest.approx(0.45)
    assert nodes[B]["status"] == "ok" and nodes[B]["rps"] > 0
    edges = {(r["caller"], r["callee"]): r for r in _rows(at, "fallback_rps")}
    assert edges[("link.pay", A)]["status"] == "bad"
    assert edges[("link.pay", A)]["p99_s"] is not None
    colours = _edge_colours(at)
    assert colours[f"link.pay->{A}"] == RED and colours[f"link.pay->{B}"] == GREEN
    assert "updated" in _everything(at) and "Traceback" not in _everything(at)

    at.multiselect(key="dm_impact").select(A).select("risk").run()
    assert not at.exception, at.exception
    text = _everything(at).replace("\\", "")  # the page escapes Markdown
    assert (
        "- link.pay: 1/3 pay orgs down (SANDBOX_A); 0.1 payments/s across 2 merchants "
        "affected; 1 of them have another granted org" in text
    )
    assert "1 of them have another granted org; degrades (via risk)" in text  # link.pay
    assert "link.trade_create" not in text  # trade creation calls neither


def test_the_map_follows_new_traffic_on_the_next_run(map_db):
    """Nothing is cached between runs: the fragment's next run shows what came in since."""
    from stability.depmap_seed import default_map

    t = time.time()
    (api,) = start(map_db, default_map(), "api:1", at=t - 30)
    api.calls(A, ok=10, failed=0)
    api.sample(t - 30)
    at = _map_page("olive", "operator")  # the operator's page has the Degrade panel too
    assert not at.exception, at.exception
    assert {r["resource"]: r for r in _rows(at, "breaker")}[A]["status"] == "ok"
    api.calls(A, ok=0, failed=40)
    api.sample(t)
    at.run()
    assert {r["resource"]: r for r in _rows(at, "breaker")}[A]["status"] == "bad"


def test_the_map_page_shows_the_timeout_lint_of_the_effective_settings(map_db):
    """H-infra's view of the effective timeout lint, on the map page (once it is in)."""
    pytest.importorskip("console.views.timeout_lint")
    at = _map_page()
    assert not at.exception, at.exception
    assert "Timeouts" in [s.value for s in at.subheader]
    assert not [w.value for w in at.warning if "unavailable" in w.value]


def test_the_overview_lists_the_dependencies_not_healthy(map_db):
    """The Overview's Dependencies panel: what the map shows red or yellow, worst first."""
    from stability.depmap_seed import default_map

    t = time.time()
    (api,) = start(map_db, default_map(), "api:1", at=t)
    api.calls(A, ok=55, failed=45)
    api.calls(B, ok=100, failed=0)
    api.calls("risk", ok=99, failed=1)
    api.sample(t)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["user"] = {"username": "vera", "role": "viewer"}
    at.run()
    assert not at.exception, at.exception
    assert "Dependencies" in [s.value for s in at.subheader]
    rows = [(r["resource"], r["status"]) for r in _rows(at, "switch")]
    assert rows == [(A, "bad"), ("risk", "warn")]
