"""The on-call views under pressure (issue 18): the Overview and the Link drill-down.

AppTest runs the real ``console/app.py`` over a migrated SQLite database. Covered: a
metrics outage leaves the database-backed panels working (and a database failure leaves
the metrics panels), alerts with summary, severity, resource, since and their runbook
section, hostile alert text inert, silencing from the console (operators only, creator,
comment and end required, audited, honoured by the silence store the dispatcher reads),
drill-down filters from the URL on every figure, sparse series drawn with markers, and
``showErrorDetails`` off in every way the console is started.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
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


# -- degraded, not broken ---------------------------------------------------------------
def test_metrics_outage_leaves_alerts_and_backlogs_working(oncall_db, monkeypatch):
    """With the metrics source unreachable the Overview used to show a QueryError
    traceback instead of every panel; now only the metrics panels say so."""
    from paycore import Database, IdGenerator
    from paycore.jobs.tasks import TaskQueue

    monkeypatch.setenv("PAYWATCH_PROMETHEUS_URL", f"http://127.0.0.1:{closed_port()}")
    put_alert(
        oncall_db,
        "slo_pay_success",
        {"step": "pay"},
        summary="pay is burning its 0.999 success SLO error budget",
        runbook="docs/runbook.md#slo_pay_success",
    )
    db = Database(str(oncall_db.url))
    TaskQueue(db, IdGenerator()).enqueue(None, "refund_query", "k1", {}, "m1")
    db.dispose()
    at = _app("vera", "viewer").run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 3 and all(
        w.startswith("The metrics source is unavailable") for w in warnings
    )
    assert [s.value for s in at.subheader] == [
        "Active alerts",
        "Core links",
        "Channel health",
        "Guard fallbacks",
        "Backlogs",
    ]
    assert any("pay is burning its 0\\.999 success SLO error budget" in m for m in _markdown(at))
    assert {m.label: m.value for m in at.metric}["Compensation pending"] == "1"
    updated = [c.value for c in at.caption if c.value.startswith("updated ")]
    assert len(updated) == 2 and all(c.endswith("from the database") for c in updated)
    text = _everything(at)
    assert "Traceback" not in text and ".py" not in text and "ConnectError" not in text


def test_a_database_panel_fails_alone_too(oncall_db):
    """A broken alert table takes only the alerts panel: links and backlogs still draw."""
    with oncall_db.begin() as conn:
        conn.execute(sa.text("drop table alert_states"))
    at = _app("vera", "viewer").run()
    assert not at.exception, at.exception
    assert [w.value.split(" is unavailable")[0] for w in at.warning] == ["The database"]
    assert "Core links" in [s.value for s in at.subheader]
    assert "**pay**" in "\n".join(_markdown(at))
    assert {m.label for m in at.metric} >= {"Compensation pending", "Pending postings"}


def test_drilldown_metrics_outage_says_so_without_traceback(oncall_db, monkeypatch):
    monkeypatch.setenv("PAYWATCH_PROMETHEUS_URL", f"http://127.0.0.1:{closed_port()}")
    at = _link(_app("vera", "viewer").run())
    assert not at.exception, at.exception
    assert [w.value.split(" is unavailable")[0] for w in at.warning] == [
        "The metrics source",
        "The metrics source",
    ]
    assert "Traceback" not in _everything(at)


# -- alerts an on-call engineer can act on ------------------------------------------------
def test_alert_rows_show_summary_severity_resource_since_and_runbook(oncall_db):
    put_alert(
        oncall_db,
        "compensation_backlog_high",
        {"status": "pending"},
        severity="ticket",
        summary="150 compensation tasks pending",
        runbook="docs/runbook.md#compensation_backlog_high",
    )
    put_alert(
        oncall_db,
        "slo_channel_call_success_sandbox_a",
        {"pay_org": "SANDBOX_A", "step": "channel_call"},
        summary="channel calls to SANDBOX_A are failing",
        runbook="docs/runbook.md#slo_channel_call_success_org",
    )
    put_alert(
        oncall_db,
        "pay_latency_p99_high",
        {"pay_org": "SANDBOX_B"},
        state="pending",
        summary="pay p99 latency via SANDBOX_B is 1.4s (> 1s)",
        runbook="docs/runbook.md#pay_latency_p99_high",
    )
    at = _app("vera", "viewer").run()
    assert not at.exception, at.exception
    rows = [m for m in _markdown(at) if "-badge[" in m]
    # firing first, page before ticket; then pending
    assert len(rows) == 3
    assert rows[0].startswith(":red-badge[page] **channel calls to SANDBOX\\_A are failing**")
    assert "pay\\_org\\=SANDBOX\\_A, step\\=channel\\_call" in rows[0]
    assert re.search(r"firing since \d\d:\d\d:\d\d UTC \(14 min\)", rows[0]), rows[0]
    assert rows[1].startswith(":orange-badge[ticket] **150 compensation tasks pending**")
    assert "pending since" in rows[2]
    assert all("{" not in r and '"' not in r for r in rows)  # no raw label JSON
    # each row's runbook is one click away: the section from docs/runbook.md
    assert [p.proto.popover.label for p in at.get("popover")] == ["Runbook"] * 3
    book = "\n".join(_markdown(at))
    assert "#### slo_channel_call_success_<org>" in book and "**Means.**" in book
    assert "docs/runbook.md#slo_channel_call_success_org" in [c.value for c in at.caption]
    # every label is still there, as a table in a collapsed expander
    labels = next(d.value for d in at.dataframe if "labels" in d.value.columns)
    assert "alertname=pay_latency_p99_high, pay_org=SANDBOX_B, severity=page" in set(
        labels["labels"]
    )


def test_every_default_rule_has_a_runbook_section():
    """Every rule's runbook link names a heading that exists in docs/runbook.md (as GitHub
    spells its anchor)."""
    from alerts.defaults import build_default_rules
    from console.views.overview import heading_anchor, runbook_section

    headings = re.findall(r"^### (.+)$", (ROOT / "docs" / "runbook.md").read_text(), re.M)
    anchors = {heading_anchor(h) for h in headings}
    for rule in build_default_rules(("SANDBOX_A", "SANDBOX_B")):
        link = rule.annotations["runbook"]
        assert link.split("#", 1)[1] in anchors, link
        assert runbook_section(link, rule.name) is not None, rule.name
    assert (
        runbook_section("docs/runbook.md#slo_pay_success", "slo_pay_success_absent").heading
        == "slo_pay_success_absent"
    )
    assert runbook_section("https://elsewhere#x") is None


def test_hostile_alert_text_is_inert(oncall_db):
    for i, text in enumerate(HOSTILE):
        put_alert(
            oncall_db,
            f"rule_{i}",
            {"resource": text},
            summary=f"{text} is down",
            severity=text if i == 0 else "page",
        )
    at = _app("vera", "viewer").run()
    assert not at.exception, at.exception
    shown = "\n".join(_markdown(at))
    for text in HOSTILE:
        assert text not in shown
    assert "\\!\\[px\\]\\(http\\:" in shown and "\\<img src\\=x" in shown
    assert "\\*\\*bold\\*\\*" in shown
    assert "](http" not in shown.replace("\\]\\(http", "")


# -- silencing ----------------------------------------------------------------------------
def _silences(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "select matchers, creator, comment, starts_at, ends_at"
                " from alert_silences order by id"
            )
        ).all()


def _audit(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select actor, role, action, target, detail from console_audit order by id")
        ).all()


def test_viewer_sees_no_silence_action(oncall_db):
    put_alert(oncall_db, "breaker_open", {"resource": "channel.SANDBOX_A"})
    at = _app("vera", "viewer").run()
    assert not at.exception
    assert "Silence an alert" not in [e.label for e in at.expander]
    assert not [b for b in at.button if b.label in ("Silence", "End silence")]


def test_operator_silences_an_alert_with_comment_and_end(oncall_db):
    from alerts.silences import SilenceStore

    fp = put_alert(
        oncall_db,
        "breaker_open",
        {"resource": "channel.SANDBOX_A"},
        summary="breaker for channel.SANDBOX_A has kept calls away for a minute",
    )
    other = put_alert(oncall_db, "breaker_open", {"resource": "coupon"}, summary="coupon")
    at = _app("olive", "operator").run()
    assert not at.exception, at.exception
    at.selectbox(key="silence_alert").select(fp)
    at.button(key="silence_submit").click().run()  # no comment: refused, nothing written
    assert [e.value for e in at.error] == ["A silence needs a comment saying why\\."]
    assert _silences(oncall_db) == []
    at.selectbox(key="silence_alert").select(fp)
    at.selectbox(key="silence_for").select("2 hours")
    at.text_input(key="silence_comment").input("channel team is on it")
    t0 = time.time()
    at.button(key="silence_submit").click().run()
    assert not at.exception, at.exception
    [row] = _silences(oncall_db)
    labels = {"alertname": "breaker_open", "resource": "channel.SANDBOX_A", "severity": "page"}
    assert json.loads(row.matchers) == labels
    assert (row.creator, row.comment) == ("olive", "channel team is on it")
    assert t0 + 7200 - 5 < row.ends_at < time.time() + 7200 + 5
    assert at.success and at.success[0].value.startswith("Silenced")
    # the dispatcher's store now suppresses this alert's notifications, not the other's
    store = SilenceStore(oncall_db)
    assert store.matches(labels) is not None
    assert store.matches({**labels, "resource": "coupon"}) is None
    rows = {m for m in _markdown(at) if "-badge[" in m}
    assert any("silenced until" in r and "by olive" in r and "SANDBOX" in r for r in rows)
    assert not any("silenced" in r and "coupon" in r for r in rows)
    assert other
    [audit] = [a for a in _audit(oncall_db) if a.action == "alert.silence"]
    assert (audit.actor, audit.role, audit.target) == ("olive", "operator", "breaker_open")
    assert json.loads(audit.detail)["ok"] is True
    # and ended again from the same place
    at.button(key="silence_end_click").click().run()
    assert not at.exception, at.exception
    assert store.matches(labels) is None
    assert [a.action for a in _audit(oncall_db)][-1] == "alert.unsilence"


def test_a_demoted_user_cannot_silence(oncall_db):
    """The form was drawn for an operator; demoted before the click, nothing is written."""
    from console.auth import set_role

    fp = put_alert(oncall_db, "breaker_open", {"resource": "coupon"})
    at = _app("olive", "operator").run()
    at.selectbox(key="silence_alert").select(fp)
    at.text_input(key="silence_comment").input("quiet please")
    set_role(oncall_db, "olive", "viewer")
    at.button(key="silence_submit").click().run()
    assert not at.exception, at.exception
    assert _silences(oncall_db) == []
    assert "Silence an alert" not in [e.label for e in at.expander]


def test_hostile_silence_comment_and_creator_are_inert(oncall_db):
    from console.auth import create_user

    fp = put_alert(oncall_db, "breaker_open", {"resource": "coupon"}, summary=HOSTILE[0])
    create_user(oncall_db, "x_bold_x", PASSWORD, "operator")
    at = _app("x_bold_x", "operator").run()
    at.selectbox(key="silence_alert").select(fp)
    at.text_input(key="silence_comment").input(HOSTILE[2])
    at.button(key="silence_submit").click().run()
    assert not at.exception, at.exception
    shown = "\n".join(
        [*_markdown(at), *(e.value for e in at.success), *(c.value for c in at.caption)]
    )
    assert "by x\\_bold\\_x" in shown and "Creator: x\\_bold\\_x" in shown
    assert HOSTILE[0] not in shown and "\\!\\[px\\]" in shown


# -- the drill-down -----------------------------------------------------------------------
def _headline(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_drilldown_filters_come_from_the_url_and_apply_to_the_headline(oncall_db):
    seed_traffic(oncall_db, org="SANDBOX_A", points=24)
    at = _link(_app("vera", "viewer").run(), link="pay", window="15m")
    assert not at.exception, at.exception
    assert float(_headline(at)["Requests/s"]) > 0  # all pay orgs
    at = _link(_app("vera", "viewer").run(), link="pay", window="15m", org="SANDBOX_B")
    assert not at.exception, at.exception
    assert at.selectbox(key="url_org").value == "SANDBOX_B"
    assert at.selectbox(key="url_link").value == "pay"
    assert at.selectbox(key="url_window").value == "15m"
    # the headline follows the pay org: nothing went through SANDBOX_B
    assert _headline(at) == {"Requests/s": "–", "Success": "–", "p99": "–"}
    assert "pay · SANDBOX_B · last 15 min" in [c.value for c in at.caption]
    at.selectbox(key="url_org").select("SANDBOX_A").run()
    assert float(_headline(at)["Requests/s"]) > 0
    assert at.query_params["org"] in ("SANDBOX_A", ["SANDBOX_A"])
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["title"]["text"] == "pay · SANDBOX_A · last 15 min"


def test_drilldown_ignores_an_unknown_org_in_the_url(oncall_db):
    at = _link(_app("vera", "viewer").run(), org=HOSTILE[0])
    assert not at.exception, at.exception
    assert at.selectbox(key="url_org").value == ""
    assert HOSTILE[0] not in _everything(at)


def test_a_single_point_series_is_drawn(oncall_db):
    """One sample used to draw an empty chart (lines without markers)."""
    from console.views.overview import link_chart, sparkline

    fig = link_chart({"rate": [(time.time(), 0.5)], "failed": [], "p99": []})
    assert all("markers" in t.mode for t in fig.data)
    spark = sparkline([(time.time(), 0.5)])
    assert "markers" in spark.data[0].mode and spark.data[0].marker.size >= 3
    seed_traffic(oncall_db, org="SANDBOX_A", points=2, every=60)
    at = _link(_app("vera", "viewer").run(), link="pay", window="15m")
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    rate = next(t for t in chart["data"] if t["name"] == "req/s")
    assert rate["mode"] == "lines+markers"
    assert len([y for y in rate["y"] if y is not None]) >= 1


# -- showErrorDetails off wherever the console starts -----------------------------------------
def test_console_command_turns_error_details_off():
    from runtime.up import console_command

    cmd = console_command("127.0.0.1", 8501)
    i = cmd.index("--client.showErrorDetails")
    assert cmd[i + 1] == "none"  # not "false": that still shows the stack trace
    assert cmd[cmd.index("run") + 1] == APP


def test_paywatch_console_and_up_start_streamlit_with_it(monkeypatch, tmp_path):
    """`paywatch console` and `paywatch up` both run console_command."""
    import runtime.cli as cli
    import runtime.up as up
    from runtime.settings import Settings

    seen: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: seen.append(cmd) or 0)
    assert cli.main(["console", "--port", "8599"]) == 0

    class Popen:
        def __init__(self, cmd, **kw):
            seen.append(cmd)

    monkeypatch.setattr(up.subprocess, "Popen", Popen)
    stack = up.AllInOne(Settings.from_env(), up.UpOptions(console_port=8598), env={})
    stack._start_console()
    assert len(seen) == 2
    for cmd in seen:
        assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"


def test_streamlit_run_app_directly_reads_error_details_off(tmp_path):
    """`streamlit run console/app.py` from anywhere reads console/.streamlit/config.toml."""
    code = (
        "from streamlit import config\n"
        f"config._main_script_path = {APP!r}\n"
        "config.get_config_options(force_reparse=True)\n"
        "print(config.get_option('client.showErrorDetails'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "none"


def test_a_pay_is_counted_under_its_trades_pay_org(migrated_db):
    """The drill-down's pay-org filter (and the per-org pay alerts) read the ``pay_org``
    label: a pay that names no org (the usual case: the trade has it) was labelled "" and
    vanished from every pay org's figures."""
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics
    from paycore import PayCore, PayRequest, PayTool
    from tests.conftest import Shop

    reg = CollectorRegistry()
    core = PayCore(migrated_db, metrics=CoreMetrics(reg))
    try:
        shop = Shop(core)
        trade = shop.trade(amount=1_000)
        core.payments.pay(shop.mid, PayRequest(trade.out_trade_no, (PayTool("channel", 1_000),)))
    finally:
        core.lock.close()
    v = reg.get_sample_value
    labels = {"step": "pay", "outcome": "pending", "reason": ""}
    assert v("paywatch_link_requests_total", {**labels, "pay_org": "SANDBOX_A"}) == 1
    assert v("paywatch_link_requests_total", {**labels, "pay_org": ""}) is None
