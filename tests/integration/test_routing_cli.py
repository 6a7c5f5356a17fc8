"""``paywatch routing``: show, publish (audited, stale refused) and preview, against a
database as an operator's script would run them."""

from __future__ import annotations

import json

from conftest import Shop

from paycore import PayCore
from paycore.routing import RoutingStore

RULES = [
    {
        "name": "big_to_b",
        "priority": 1,
        "amount_min": 10_000,
        "targets": [{"pay_org_no": "SANDBOX_B", "weight": 100}],
        "fallback": ["SANDBOX_A"],
    }
]


def test_cli_shows_publishes_and_previews(sqlite_url, monkeypatch, capsys, tmp_path) -> None:
    from console.audit import recent
    from runtime.cli import main

    monkeypatch.setenv("PAYWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PAYWATCH_ACTOR", "sre-sam")
    core = PayCore(sqlite_url)
    shop = Shop(core)
    try:
        assert main(["routing", "show"]) == 0
        assert json.loads(capsys.readouterr().out)["version"] == 0

        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps(RULES))
        args = ["routing", "publish", "--file", str(rules), "--reason", "big pays to B"]
        assert main([*args, "--expected-version", "0"]) == 0
        assert json.loads(capsys.readouterr().out) == {"version": 1, "rules": 1}
        assert main([*args, "--expected-version", "0"]) == 2  # stale: v1 is current
        assert "stale_rule_set" in capsys.readouterr().err
        rules.write_text('[{"name": "x", "priority": 1, "targets": []}]')
        assert main(args) == 2
        assert "invalid_routing_rules" in capsys.readouterr().err

        current = RoutingStore(core.db).current()
        assert current.version == 1 and current.author == "sre-sam"
        assert main(["routing", "show"]) == 0
        assert json.loads(capsys.readouterr().out)["rules"] == RULES
        assert main(["routing", "show", "--history"]) == 0
        assert [h["version"] for h in json.loads(capsys.readouterr().out)] == [1]

        base = ["routing", "preview", "--merchant", shop.mid, "--order-type", "goods"]
        base += ["--sub-type", "physical", "--default-org", "SANDBOX_A"]
        assert main([*base, "--amount", "20000"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["rule"], out["candidates"]) == ("big_to_b", ["SANDBOX_B", "SANDBOX_A"])
        assert main([*base, "--amount", "500"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["rule"], out["candidates"]) == ("default", ["SANDBOX_A"])

        audit = [
            (a["actor"], a["action"]) for a in recent(core.db.engine, action="routing.publish")
        ]
        assert audit == [("sre-sam", "routing.publish")] * 3  # the refusals are audited too
    finally:
        core.close()
