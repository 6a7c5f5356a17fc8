"""The on-call Overview under pressure (issue 18). AppTest runs the real ``console/app.py`` over
a migrated SQLite database. Covered: a metrics outage leaves the database-backed panels
working (and a database failure leaves the metrics panels), alerts with summary, severity,
resource, since and their runbook section, hostile alert text inert, and
``showErrorDetails`` off in every way the console is started.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from oncall_app import (
    APP,
    HOSTILE,
    ROOT,
    _app,
    _everything,
    _link,
    _markdown,
    closed_port,
    oncall_db,  # noqa: F401 - fixture
    put_alert,
)


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
    assert len(warnings) == 5 and all(
        w.startswith("The metrics source is unavailable") for w in warnings
    )
    assert [s.value for s in at.subheader] == [
        "Active alerts",
        "Core links",
        "Channel health",
        "Guard fallbacks",
        "Routing",
        "Dependencies",
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
    from runtime.logs import FORMAT_ENV, LEVEL_ENV
    from runtime.settings import Settings

    seen: list[list[str]] = []
    envs: list[dict[str, str]] = []

    class Popen:
        def __init__(self, cmd, **kw):
            seen.append(cmd)
            envs.append(kw["env"])

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Popen)
    monkeypatch.setenv(FORMAT_ENV, "text")  # restored after `main` sets it
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    argv = ["console", "--port", "8599", "--log-format", "json", "--log-level", "debug"]
    assert cli.main(argv) == 0
    env = {LEVEL_ENV: "warning"}  # what `paywatch up --log-level warning` hands its console
    stack = up.AllInOne(Settings.from_env(), up.UpOptions(console_port=8598), env=env)
    stack._start_console()
    assert len(seen) == 2
    for cmd in seen:
        assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"
        assert cmd[cmd.index("-m") + 1] == "runtime.console_host"  # it routes the log lines
    assert envs[0][FORMAT_ENV] == "json" and envs[0][LEVEL_ENV] == "debug"
    assert envs[1][LEVEL_ENV] == "warning"


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
