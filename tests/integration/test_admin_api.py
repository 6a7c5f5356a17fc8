"""The admin API's switches and approvals (issue 20, point 8): role-checked and audited like
the console's Switches page, the four-eyes rule kept, refusals a clear 4xx."""

from __future__ import annotations

from admin_api_app import audit_rows, stack  # noqa: F401 - fixture

WEAK = {"kind": "degrade", "target": "risk", "reason": "risk engine slow", "ttl_s": 600}
STRONG = {
    "kind": "force_breaker",
    "target": "channel.SANDBOX_A",
    "params": {"state": "forced_open"},
    "reason": "channel A outage",
    "ttl_s": 600,
}


def test_a_weak_degrade_applies_at_once_and_writes_the_consoles_audit_rows(stack):
    olga = stack.as_user("olga")
    answer = stack.http.post("/admin/v1/switches", json=WEAK, headers=olga)
    assert answer.status_code == 201, answer.text
    rec = answer.json()
    assert (rec["status"], rec["actor"], rec["target"]) == ("active", "olga", "risk")
    listed = stack.http.get("/admin/v1/switches", headers=olga).json()["switches"]
    assert [s["id"] for s in listed] == [rec["id"]]
    row = audit_rows(stack.engine, "switch.propose")[0]
    assert (row["actor"], row["role"], row["target"]) == ("olga", "operator", "risk")
    assert row["detail"]["ok"] is True and row["detail"]["kind"] == "degrade"
    assert row["detail"]["reason"] == "risk engine slow" and row["detail"]["via"] == "admin_api"
    entry = stack.platform.stability.switches.audit_log(5)[0]
    assert (entry["action"], entry["actor"], entry["switch_id"]) == ("apply", "olga", rec["id"])
    stack.platform.stability.watcher.refresh()
    assert "risk" in stack.platform.stability.guard.snapshot.degraded
    stack.http.post(f"/admin/v1/switches/{rec['id']}/revert", json={"reason": "x"}, headers=olga)
    assert stack.http.get("/admin/v1/switches", headers=olga).json()["switches"] == []
    history = stack.http.get("/admin/v1/switches?all=true", headers=olga).json()["switches"]
    assert [(s["id"], s["status"]) for s in history] == [(rec["id"], "reverted")]


def test_a_strong_switch_waits_for_a_second_person(stack):
    olga, oscar = stack.as_user("olga"), stack.as_user("oscar")
    rec = stack.http.post("/admin/v1/switches", json=STRONG, headers=olga).json()
    assert rec["status"] == "pending" and rec["requires_approval"] is True
    pending = stack.http.get("/admin/v1/approvals", headers=olga).json()["switches"]
    assert [(p["id"], p["you_may_approve"]) for p in pending] == [(rec["id"], False)]
    mine = stack.http.post(f"/admin/v1/switches/{rec['id']}/approve", headers=olga)
    assert mine.status_code == 409 and "second person" in mine.json()["error"]["message"]
    refused = audit_rows(stack.engine, "switch.approve")[0]
    assert refused["actor"] == "olga" and refused["detail"]["ok"] is False
    theirs = stack.http.get("/admin/v1/approvals", headers=oscar).json()["switches"]
    assert theirs[0]["you_may_approve"] is True
    done = stack.http.post(f"/admin/v1/switches/{rec['id']}/approve", headers=oscar)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["approved_by"]) == ("active", "oscar")
    again = stack.http.post(f"/admin/v1/switches/{rec['id']}/approve", headers=oscar)
    assert again.status_code == 409 and "is active" in again.json()["error"]["message"]
    ok = audit_rows(stack.engine, "switch.approve")[0]
    assert (ok["actor"], ok["detail"]["ok"], ok["detail"]["switch_id"]) == (
        "oscar",
        True,
        rec["id"],
    )


def test_reject_needs_a_second_person_and_revert_ends_a_switch(stack):
    olga, oscar = stack.as_user("olga"), stack.as_user("oscar")
    rec = stack.http.post("/admin/v1/switches", json=STRONG, headers=olga).json()
    own = stack.http.post(
        f"/admin/v1/switches/{rec['id']}/reject", json={"reason": "no"}, headers=olga
    )
    assert own.status_code == 409
    no_reason = stack.http.post(
        f"/admin/v1/switches/{rec['id']}/reject", json={"reason": " "}, headers=oscar
    )
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]["message"]
    rejected = stack.http.post(
        f"/admin/v1/switches/{rec['id']}/reject", json={"reason": "not needed"}, headers=oscar
    )
    assert rejected.json()["status"] == "rejected"
    weak = stack.http.post("/admin/v1/switches", json=WEAK, headers=olga).json()
    reverted = stack.http.post(
        f"/admin/v1/switches/{weak['id']}/revert", json={"reason": "recovered"}, headers=oscar
    )
    assert reverted.status_code == 200 and reverted.json()["status"] == "reverted"
    twice = stack.http.post(
        f"/admin/v1/switches/{weak['id']}/revert", json={"reason": "again"}, headers=oscar
    )
    assert twice.status_code == 409 and twice.json()["error"]["message"].endswith("is reverted")
    gone = stack.http.post("/admin/v1/switches/999999/revert", json={"reason": "x"}, headers=oscar)
    assert gone.status_code == 404
    actions = [e["action"] for e in stack.platform.stability.switches.audit_log(10)]
    assert actions[:4] == ["reverted", "apply", "rejected", "propose"]


def test_bad_switches_are_a_clear_4xx_and_audited(stack):
    olga = stack.as_user("olga")
    cases = [
        ({**WEAK, "target": "no.such.thing"}, 404, "unknown target"),
        ({**WEAK, "kind": "dry_run_limit", "target": "nope.total"}, 404, "no limit rule"),
        ({**WEAK, "kind": "explode"}, 422, "kind must be one of"),
        ({**WEAK, "reason": ""}, 422, "a reason is required"),
        ({**WEAK, "ttl_s": None}, 422, "an expiry is required"),
        ({**WEAK, "ttl_s": 30 * 86400}, 422, "within 7 days"),
        ({**STRONG, "params": {"state": "ajar"}}, 422, "forced_open or forced_closed"),
    ]
    for body, status, words in cases:
        answer = stack.http.post("/admin/v1/switches", json=body, headers=olga)
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["error"]["message"], answer.text
        if status == 404:
            assert answer.json()["error"]["code"] == "unknown_switch_target"
    bad_ttl = stack.http.post("/admin/v1/switches", json={**WEAK, "ttl_s": "1h"}, headers=olga)
    assert bad_ttl.status_code == 422 and "ttl_s" in bad_ttl.json()["error"]["message"]
    extra = stack.http.post("/admin/v1/switches", json={**WEAK, "colour": "red"}, headers=olga)
    assert extra.status_code == 422 and "colour" in extra.json()["error"]["message"]
    assert stack.http.post("/admin/v1/switches", content=b"{", headers=olga).status_code == 400
    twin = stack.http.post("/admin/v1/switches", json=WEAK, headers=olga)
    assert twin.status_code == 201
    clash = stack.http.post("/admin/v1/switches", json=WEAK, headers=olga)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "switch_conflict"
    refused = [r for r in audit_rows(stack.engine, "switch.propose") if not r["detail"]["ok"]]
    assert len(refused) == len(cases) + 1  # every refusal the service or the API made


def test_dry_run_says_what_would_happen_and_writes_nothing(stack):
    olga = stack.as_user("olga")
    version = stack.platform.stability.switches.version()
    answer = stack.http.post("/admin/v1/switches/dry-run", json=STRONG, headers=olga)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["needs_approval"] is True and body["problems"] == []
    assert "link.pay" in body["fails"] and body["after"]
    assert body["impact"]["resource"] == "channel.SANDBOX_A"
    bad = stack.http.post("/admin/v1/switches/dry-run", json={**WEAK, "reason": ""}, headers=olga)
    assert bad.json()["problems"] == ["a reason is required"]
    assert stack.platform.stability.switches.version() == version
    assert stack.platform.stability.switches.listing() == []


def test_roles_are_the_consoles(stack):
    vic = stack.as_user("vic")
    assert stack.http.get("/admin/v1/switches", headers=vic).status_code == 200
    assert stack.http.get("/admin/v1/approvals", headers=vic).status_code == 200
    for path in ("/admin/v1/switches", "/admin/v1/switches/dry-run"):
        answer = stack.http.post(path, json=WEAK, headers=vic)
        assert answer.status_code == 403, path
        assert answer.json()["error"]["code"] == "forbidden"
    assert stack.http.get("/admin/v1/audit", headers=vic).status_code == 403
    olga = stack.as_user("olga")
    entries = stack.http.get("/admin/v1/audit", headers=olga).json()["entries"]
    assert entries == []
    assert stack.platform.stability.switches.listing() == []


def test_a_switch_store_that_is_down_is_a_503_without_driver_details(stack):
    import sqlalchemy as sa

    olga = stack.as_user("olga")
    svc = stack.platform.stability.switches
    working, svc.engine = (
        svc.engine,
        sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/x"),
    )
    try:
        answer = stack.http.get("/admin/v1/switches", headers=olga)
    finally:
        svc.engine.dispose()
        svc.engine = working
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "switch_storage_unavailable" and "psycopg" not in error["message"]
