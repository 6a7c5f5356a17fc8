"""AppTest tests of the Routing page and the Overview's routing panel (issue #21): the
current rules as a table, publishing with a reason (audited; refused without one, refused
when someone published meanwhile, refused for a role that may not), the preview that
flips when channel.SANDBOX_A is degraded, version diffs, decisions and fallbacks from the
metrics source; the impact query's routing alternatives from the console's view."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
PASSWORD = "correct-horse-battery"
ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
RULES = [
    {
        "name": "big_goods",
        "priority": 10,
        "order_type": "goods",
        "amount_min": 5000,
        "targets": [{"pay_org_no": "SANDBOX_A", "weight": 100}],
        "fallback": ["SANDBOX_B"],
    },
    {"name": "rest", "priority": 20, "targets": [{"pay_org_no": "SANDBOX_C", "weight": 1}]},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def console_url(request, tmp_path, monkeypatch):
    """A migrated database (SQLite and PostgreSQL) with the seeded map, operators otto
    and olga, a viewer, and merchant m-ab granted SANDBOX_A and SANDBOX_B."""
    from console.auth import create_user
    from stability.depmap_seed import seed_if_empty
    from stability.depmap_store import DependencyMapStore

    url = request.getfixturevalue(f"{'sqlite' if request.param == 'sqlite' else 'pg'}_url")
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    for name in ("PAYWATCH_PROMETHEUS_URL", "PAYWATCH_REDIS_URL", "PAYWATCH_PAY_ORGS"):
        monkeypatch.delenv(name, raising=False)
    engine = sa.create_engine(url)
    seed_if_empty(DependencyMapStore(engine), ORGS, redis_lock=False)
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("olga", "operator")):
        create_user(engine, name, PASSWORD, role)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into merchants (merchant_id, name, token_hash, token_prefix, status, "
                "fee_bps, created_at) values ('m-ab', 'm-ab', 'm-ab', 'x', 'active', 0, "
                "'2026-01-01 00:00:00')"
            )
        )
        for org in ("SANDBOX_A", "SANDBOX_B"):
            conn.execute(sa.text("insert into merchant_pay_orgs values ('m-ab', :o)"), {"o": org})
    engine.dispose()
    yield url


@pytest.fixture
def store(console_url):
    from paycore.db.engine import Database
    from paycore.routing.store import RoutingStore

    db = Database(console_url)
    yield RoutingStore(db)
    db.engine.dispose()


def _publish(store, rules=RULES, *, author="olga", reason="first rules"):
    return store.publish(store.rules_from_json(json.dumps(rules)), author=author, reason=reason)


def _page(page: str, user: str, role: str = "operator") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["user"] = {"username": user, "role": role}
    at.run(timeout=60)
    at.switch_page(f"pages/{page}.py")
    return at.run(timeout=60)


def _plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.title] + [e.value for e in at.subheader]
    parts += [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.success] + [e.value for e in at.warning]
    parts += [e.value for e in at.error] + [e.value for e in at.info]
    return _plain("\n".join(str(p) for p in parts))


def _table(at: AppTest, column: str):
    """The first table with ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _audit(url: str) -> list[tuple[str, str, dict]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select actor, action, detail from console_audit order by id")
        ).all()
    engine.dispose()
    return [(a, act, json.loads(d)) for a, act, d in rows if act == "routing.publish"]


def test_page_renders_the_current_rules(store):
    _publish(store, reason="route <b>big</b> goods via A")
    at = _page("sre_routing", "otto")
    assert not at.exception, at.exception
    text = _texts(at)
    assert "Version **1** by olga" in text and "route <b>big</b> goods via A" in text
    assert "route \\<b\\>big" in "\n".join(m.value for m in at.markdown)  # shown inert
    rules = _table(at, "amount")
    assert list(rules["rule"]) == ["big_goods", "rest"]
    big = rules.iloc[0]
    assert big["order_type"] == "goods" and big["merchant_id"] == "any"
    assert big["amount"] == "5000–∞" and big["fallback"] == "SANDBOX_B"
    assert big["targets"] == "SANDBOX_A 100 (100%)"
    # the editor opens on the current version's JSON
    assert json.loads(at.text_area(key="rt_json").value) == RULES


def test_publish_with_a_reason_writes_a_version_and_an_audit_row(store, console_url):
    at = _page("sre_routing", "otto")
    assert "No routing rules published" in _texts(at)
    at.text_area(key="rt_json").input(json.dumps(RULES))
    at.text_input(key="rt_reason").input("split big goods")
    at.button(key="rt_publish").click().run(timeout=60)
    assert not at.exception, at.exception
    assert at.success and "version 1 published (2 rules)" in at.success[0].value
    current = store.current()
    assert current.version == 1 and current.author == "otto"
    assert current.reason == "split big goods" and [r.name for r in current.rules] == [
        "big_goods",
        "rest",
    ]
    ((actor, _, detail),) = _audit(console_url)
    assert actor == "otto" and detail["ok"] is True and detail["version"] == 1
    assert detail["reason"] == "split big goods" and detail["expected_version"] == 0
    # the versions panel and its diff against the empty set
    assert list(_table(at, "published_at")["version"]) == [1]
    diff = next(c.value for c in at.code if c.language == "diff")
    assert '+    "name": "big_goods",' in diff


def test_publish_without_a_reason_or_with_bad_json_is_refused(store, console_url):
    _publish(store)
    at = _page("sre_routing", "otto")
    at.text_area(key="rt_json").input(json.dumps(RULES[1:]))
    at.button(key="rt_publish").click().run(timeout=60)
    assert any("a reason is required" in _plain(e.value) for e in at.error)
    at.text_area(key="rt_json").input('[{"name": "x", "priority": 1, "targets": []}]')
    at.text_input(key="rt_reason").input("broken")
    at.button(key="rt_publish").click().run(timeout=60)
    assert any("rule x: 1-16 targets" in _plain(e.value) for e in at.error)
    assert store.current().version == 1  # nothing written
    assert [d["ok"] for *_, d in _audit(console_url)] == [False, False]


def test_a_stale_edit_is_refused_with_a_clear_message(store, console_url):
    _publish(store)
    at = _page("sre_routing", "otto")  # the editor opens on version 1
    _publish(store, RULES[:1], author="olga", reason="drop rest")  # meanwhile: version 2
    at.text_area(key="rt_json").input(json.dumps(RULES[1:]))
    at.text_input(key="rt_reason").input("only rest")
    at.button(key="rt_publish").click().run(timeout=60)
    text = _texts(at)
    assert "Version 2 was published by olga since you opened the editor on version 1" in text
    assert "Not published: the rules changed meanwhile: version 2 is current" in text
    assert "Reload the current rules" in text
    current = store.current()
    assert current.version == 2 and [r.name for r in current.rules] == ["big_goods"]
    ((*_, detail),) = _audit(console_url)
    assert detail["ok"] is False and detail["expected_version"] == 1
    # reloading takes version 2 into the editor; publishing then works
    at.button(key="rt_reload").click().run(timeout=60)
    assert json.loads(at.text_area(key="rt_json").value) == RULES[:1]
    at.text_input(key="rt_reason").input("rest back")
    at.text_area(key="rt_json").input(json.dumps(RULES))
    at.button(key="rt_publish").click().run(timeout=60)
    assert store.current().version == 3


def test_a_role_that_may_not_publish_gets_a_read_only_view(store, console_url, monkeypatch):
    from console.roles import ACTIONS

    _publish(store)
    # demoted to viewer while editing: the click is refused, nothing written
    from console.auth import set_role

    at = _page("sre_routing", "otto")
    at.text_area(key="rt_json").input(json.dumps(RULES[1:]))
    at.text_input(key="rt_reason").input("only rest")
    engine = sa.create_engine(console_url)
    assert set_role(engine, "otto", "viewer")
    engine.dispose()
    at.button(key="rt_publish").click().run(timeout=60)
    assert not at.exception, at.exception
    assert "not allowed to open this page (your role is viewer)" in _texts(at)
    assert not [b for b in at.button if b.key == "rt_publish"]
    assert store.current().version == 1 and _audit(console_url) == []
    engine = sa.create_engine(console_url)
    assert set_role(engine, "otto", "operator")
    engine.dispose()
    # publishing raised to admins: an operator reads the rules and cannot publish
    monkeypatch.setitem(ACTIONS, "routing.publish", "admin")
    at = _page("sre_routing", "otto")
    assert not at.exception, at.exception
    assert "Your role (operator) may read the routing rules" in _texts(at)
    assert not [t for t in at.text_area if t.key == "rt_json"]
    assert not [b for b in at.button if b.key == "rt_publish"]
    assert json.loads(next(c.value for c in at.code if c.language == "json")) == RULES
    assert store.current().version == 1 and _audit(console_url) == []


def _preview(at: AppTest, **values) -> str:
    for key, value in values.items():
        widget = at.number_input(key=key) if key == "rt_pv_amount" else at.text_input(key=key)
        widget.set_value(value)
    at.button(key="FormSubmitter:rt_preview-Which org would this payment take?").click()
    at.run(timeout=60)
    assert not at.exception, at.exception
    return next(
        _plain(m.value) for m in at.markdown if "would" in m.value and "candidates:" in m.value
    )


def test_preview_shows_the_org_and_flips_when_channel_a_is_degraded(store, console_url):
    from runtime.wiring import build_stability

    _publish(store)
    at = _page("sre_routing", "otto")
    line = _preview(at, rt_pv_merchant="m-ab", rt_pv_amount=8000)
    assert line == (
        "This payment would take **SANDBOX_A** (rule big_goods); candidates: "
        "SANDBOX_A (available), SANDBOX_B (available)"
    )
    # a small amount matches "rest": C is not granted to m-ab, so the trade's own org
    line = _preview(at, rt_pv_amount=100)
    assert "would take **SANDBOX_A** (rule default)" in line
    # channel.SANDBOX_A is strong for link.pay: proposed by olga, approved by otto
    engine = sa.create_engine(console_url)
    svc = build_stability(engine, pay_orgs=ORGS, redis_url=None).switches
    rec = svc.propose(
        "degrade", "channel.SANDBOX_A", actor="olga", reason="A down", ttl=timedelta(hours=1)
    )
    svc.approve(rec.id, approver="otto")
    line = _preview(at, rt_pv_amount=8000)
    assert line == (
        "This payment would take **SANDBOX_B** (rule big_goods); candidates: "
        "SANDBOX_A (degraded), SANDBOX_B (available)"
    )
    svc.revert(rec.id, actor="otto", reason="A back")
    engine.dispose()
    assert "would take **SANDBOX_A** (rule big_goods)" in _preview(at, rt_pv_amount=8000)


def _sample_routing(url: str, decisions, fallbacks) -> None:
    """Routing counted by the router's recorder and sampled into the database's
    time-series store, as an API process's sampler writes them (two samples 60 s apart:
    the increase is the counts)."""
    from prometheus_client import CollectorRegistry

    from collectors import Sampler, TimeSeriesStore
    from collectors.routing_metrics import RoutingMetrics

    reg = CollectorRegistry()
    metrics = RoutingMetrics(reg)
    engine = sa.create_engine(url)
    sampler = Sampler(reg, TimeSeriesStore(engine), instance="api:test:1", interval=5.0)
    now = time.time()
    for labels, _ in decisions:  # the series exist before the counts (a running process)
        metrics.decisions.labels(*labels)
    for labels, _ in fallbacks:
        metrics.fallbacks.labels(*labels)
    sampler.sample_once(now=now - 60)
    for labels, n in decisions:
        for _ in range(n):
            metrics.decided(*labels)
    for labels, n in fallbacks:
        for _ in range(n):
            metrics.fell_back(*labels)
    sampler.sample_once(now=now - 1)
    engine.dispose()


def test_decisions_fallbacks_and_the_overview_panel(store, console_url):
    _publish(store)
    _sample_routing(
        console_url,
        [(("big_goods", "SANDBOX_A"), 30), (("big_goods", "SANDBOX_B"), 10)],
        [(("big_goods", "SANDBOX_A", "SANDBOX_B", "degraded"), 10)],
    )
    at = _page("sre_routing", "otto")
    decided = _table(at, "decisions")
    assert decided.to_dict("records") == [
        {"rule": "big_goods", "pay_org": "SANDBOX_A", "decisions": 30.0},
        {"rule": "big_goods", "pay_org": "SANDBOX_B", "decisions": 10.0},
    ]
    fell = _table(at, "to_org").to_dict("records")
    assert fell == [
        {
            "rule": "big_goods",
            "from_org": "SANDBOX_A",
            "to_org": "SANDBOX_B",
            "reason": "degraded",
            "fallbacks": 10.0,
        }
    ]
    overview = _page("oncall_overview", "otto")
    assert not overview.exception, overview.exception
    assert "Routing" in [s.value for s in overview.subheader]
    rows = _table(overview, "to_org").to_dict("records")
    assert rows == [
        {"rule": "big_goods", "from_org": "SANDBOX_A", "to_org": "SANDBOX_B", "fallbacks": 10.0}
    ]
    assert "](/sre_routing)" in "\n".join(m.value for m in overview.markdown)
    # a viewer sees the panel too, without the link to a page it may not open
    seen = _page("oncall_overview", "vera", "viewer")
    assert "Routing" in [s.value for s in seen.subheader]
    assert "](/sre_routing)" not in "\n".join(m.value for m in seen.markdown)


def test_impact_counts_the_routing_alternatives_from_the_consoles_view(store, console_url):
    from collectors import TimeSeriesStore
    from console.views.routing import routed_traffic, with_routing
    from stability.depmap_seed import default_map
    from stability.impact_traffic import RecentTraffic, traffic_impact

    _publish(store)
    _sample_routing(
        console_url,
        [
            (("big_goods", "SANDBOX_A"), 30),
            (("rest", "SANDBOX_C"), 10),
            (("default", "SANDBOX_A"), 10),
        ],
        [],
    )
    engine = sa.create_engine(console_url)
    query, t = TimeSeriesStore(engine), time.time()
    routed = routed_traffic(store.current(), query, t, window=300)
    assert routed.candidates == {
        "big_goods": ("SANDBOX_A", "SANDBOX_B"),
        "rest": ("SANDBOX_C",),
    }
    assert routed.decisions["big_goods"] == {"SANDBOX_A": 30.0}
    traffic = with_routing(
        RecentTraffic({"link.pay": {"SANDBOX_A": 4.0, "SANDBOX_C": 1.0}}),
        store.db,
        query,
        t,
        window=300,
    )
    pay = {i.link: i for i in traffic_impact(default_map(ORGS), ["channel.SANDBOX_A"], traffic)}[
        "link.pay"
    ]
    # 30 of the 40 decisions that chose A had B left (the 10 unmatched had only A)
    assert pay.routed_share == 0.75 and pay.fallback_orgs == ("SANDBOX_B",)
    assert (
        "75% of its routed payments have an alternative org (routing falls back to "
        "SANDBOX_B)" in pay.message
    )
    engine.dispose()


def test_depmap_impact_names_the_routing_fallback(store):
    _publish(store)
    at = _page("oncall_depmap", "otto")
    at.multiselect(key="dm_impact").select("channel.SANDBOX_A").run(timeout=60)
    assert not at.exception, at.exception
    pay = next(m for m in _texts(at).splitlines() if m.startswith("- link.pay:"))
    assert pay.endswith("routing falls back to SANDBOX_B (no routed payments in the window)"), pay
