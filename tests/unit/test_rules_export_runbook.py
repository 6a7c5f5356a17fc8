"""``paywatch rules export --runbook-base-url``: every exported alert with a ``runbook``
annotation carries an absolute ``runbook_url`` (base + ``#anchor``, the anchor a heading
of docs/runbook.md), built as paywatch's Alertmanager notifier builds its own."""

from __future__ import annotations

import yaml
from test_alertmanager_payload import alert, notifier, runbook_slugs

from alerts.alertmanager import runbook_link
from runtime.cli import main
from runtime.rules_cli import RUNBOOK_ENV, SHIPPED_RULES, SHIPPED_RUNBOOK_BASE_URL, export_text

BASE = "https://wiki.example/ops/runbook.md"


def alerts_of(text: str) -> list[dict]:
    doc = yaml.safe_load(text)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_with_a_runbook_gets_an_absolute_url_to_an_existing_heading() -> None:
    items = alerts_of(export_text(runbook_base_url=BASE))
    linked = [a for a in items if "runbook" in a.get("annotations", {})]
    assert {"channel_down", "breaker_open", "slo_pay_success"} <= {a["alert"] for a in linked}
    slugs = runbook_slugs()
    for a in linked:
        notes = a["annotations"]
        anchor = notes["runbook"].partition("#")[2]
        assert notes["runbook_url"] == f"{BASE}#{anchor}", a["alert"]
        assert anchor in slugs, a["alert"]
    # alerts without a runbook annotation (the _absent twins) get no url either
    assert all("runbook_url" not in a.get("annotations", {}) for a in items if a not in linked)


def test_the_url_is_the_one_paywatch_s_notifier_sends() -> None:
    am = notifier(runbook_base_url=BASE)
    sent = am.item(alert(rule="channel_down", runbook="docs/runbook.md#channel_down"), 0.0)
    assert sent["annotations"]["runbook_url"] == runbook_link(BASE, "channel_down")
    (down,) = [
        a for a in alerts_of(export_text(runbook_base_url=BASE)) if a["alert"] == "channel_down"
    ]
    assert down["annotations"]["runbook_url"] == sent["annotations"]["runbook_url"]
    # the notifier's default (no base) is the local file, as before
    assert runbook_link(None, "x").startswith("file:///") and runbook_link(None, "x").endswith(
        "docs/runbook.md#x"
    )


def test_cli_flag_then_setting_then_the_shipped_placeholder(monkeypatch, capsys) -> None:
    monkeypatch.delenv(RUNBOOK_ENV, raising=False)
    assert main(["rules", "export", "--runbook-base-url", BASE + "#old"]) == 0
    out = capsys.readouterr().out
    assert f"runbook_url: {BASE}#channel_down" in out and "#old" not in out

    monkeypatch.setenv(RUNBOOK_ENV, "https://docs.example/rb.md")
    assert main(["rules", "export"]) == 0
    assert "runbook_url: https://docs.example/rb.md#channel_down" in capsys.readouterr().out
    assert main(["rules", "export", "--runbook-base-url", BASE]) == 0
    assert f"runbook_url: {BASE}#channel_down" in capsys.readouterr().out

    monkeypatch.delenv(RUNBOOK_ENV)
    assert main(["rules", "export"]) == 0
    out = capsys.readouterr().out
    assert out == SHIPPED_RULES.read_text(encoding="utf-8")
    assert f"runbook_url: {SHIPPED_RUNBOOK_BASE_URL}#channel_down" in out
    assert "file://" not in out
