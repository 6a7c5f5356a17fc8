"""Switch plans through the admin API: saved and reviewed by two people, run with one reason
and expiry, approved by a second person, reverted in one action; each change in the
console audit log and every step in the stability audit log."""

from __future__ import annotations

from admin_api_app import audit_rows, stack  # noqa: F401 - fixture

NAME = "channel SANDBOX_A outage"
PLAN = {
    "description": "pay org A is down",
    "steps": [
        {"kind": "force_breaker", "target": "channel.SANDBOX_A", "state": "forced_open"},
        {"kind": "set_limit", "target": "channel.SANDBOX_A.total", "factor": 0.5},
        {"kind": "annotate", "text": "channel A outage plan"},
    ],
}
RUN = {"reason": "A answers 500s", "ttl_s": 1800}


def _saved_and_reviewed(stack, author, reviewer):
    saved = stack.http.put(f"/admin/v1/plans/{NAME}", json=PLAN, headers=author)
    assert saved.status_code == 200, saved.text
    assert saved.json()["status"] == "draft"
    reviewed = stack.http.post(f"/admin/v1/plans/{NAME}/review", headers=reviewer)
    assert reviewed.status_code == 200 and reviewed.json()["status"] == "reviewed"


def test_a_plan_runs_after_a_second_person_approves_and_reverts_in_one_action(stack):
    olga, oscar = stack.as_user("olga"), stack.as_user("oscar")
    _saved_and_reviewed(stack, olga, oscar)
    started = stack.http.post(f"/admin/v1/plans/{NAME}/run", json=RUN, headers=olga)
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["status"] == "pending" and run["actor"] == "olga"
    waiting = stack.http.get("/admin/v1/approvals", headers=oscar).json()["plans"]
    assert [(p["id"], p["waits_for"], p["you_may_approve"]) for p in waiting] == [
        (run["id"], "approval", True)
    ]
    own = stack.http.post(f"/admin/v1/plans/runs/{run['id']}/approve", headers=olga)
    assert own.status_code == 409 and "second person" in own.json()["error"]["message"]
    approved = stack.http.post(f"/admin/v1/plans/runs/{run['id']}/approve", headers=oscar)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active" and len(approved.json()["applied"]) == 3
    live = stack.http.get("/admin/v1/switches", headers=oscar).json()["switches"]
    assert {(s["kind"], s["target"]) for s in live} == {
        ("force_breaker", "channel.SANDBOX_A"),
        ("set_limit", "channel.SANDBOX_A.total"),
    }
    reverted = stack.http.post(
        f"/admin/v1/plans/runs/{run['id']}/revert", json={"reason": "A is back"}, headers=olga
    )
    assert reverted.status_code == 200 and reverted.json()["status"] == "reverted"
    assert stack.http.get("/admin/v1/switches", headers=olga).json()["switches"] == []
    actions = [r["action"] for r in audit_rows(stack.engine, "plan.revert")]
    assert actions == ["plan.revert"]
    for action, actor in (("plan.save", "olga"), ("plan.review", "oscar"), ("plan.run", "olga")):
        row = audit_rows(stack.engine, action)[0]
        assert (row["actor"], row["detail"]["ok"], row["detail"]["via"]) == (
            actor,
            True,
            "admin_api",
        )
    steps = [e["action"] for e in stack.platform.stability.switches.audit_log(50)]
    assert "plan_approve" in steps and "plan_revert" in steps


def test_plan_refusals_are_a_clear_4xx(stack):
    olga, oscar, vic = stack.as_user("olga"), stack.as_user("oscar"), stack.as_user("vic")
    assert stack.http.put(f"/admin/v1/plans/{NAME}", json=PLAN, headers=vic).status_code == 403
    bad = {"steps": [{"kind": "degrade", "target": "no.such.thing"}]}
    refused = stack.http.put("/admin/v1/plans/bad", json=bad, headers=olga)
    assert refused.status_code in (404, 422) and "step 1" in refused.json()["error"]["message"]
    assert stack.http.put(f"/admin/v1/plans/{NAME}", json=PLAN, headers=olga).is_success
    own = stack.http.post(f"/admin/v1/plans/{NAME}/review", headers=olga)
    assert own.status_code == 409
    draft = stack.http.post(f"/admin/v1/plans/{NAME}/run", json=RUN, headers=olga)
    assert draft.status_code == 409 and "reviewed" in draft.json()["error"]["message"]
    unknown = stack.http.post("/admin/v1/plans/nope/run", json=RUN, headers=olga)
    assert unknown.status_code == 404
    assert stack.http.post("/admin/v1/plans/runs/999/approve", headers=oscar).status_code == 404
    stack.http.post(f"/admin/v1/plans/{NAME}/review", headers=oscar)
    no_reason = stack.http.post(f"/admin/v1/plans/{NAME}/run", json={"ttl_s": 60}, headers=olga)
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]["message"]
    run = stack.http.post(f"/admin/v1/plans/{NAME}/run", json=RUN, headers=olga).json()
    not_active = stack.http.post(
        f"/admin/v1/plans/runs/{run['id']}/revert", json={"reason": "x"}, headers=oscar
    )
    assert not_active.status_code == 409
    rejected = stack.http.post(
        f"/admin/v1/plans/runs/{run['id']}/reject", json={"reason": "not now"}, headers=oscar
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    listed = stack.http.get("/admin/v1/plans", headers=vic).json()
    names = [p["name"] for p in listed["plans"]]  # the shipped plans, NAME saved over its own
    assert names.count(NAME) == 1 and "degrade notification" in names
    assert [r["status"] for r in listed["runs"]] == ["rejected"]
