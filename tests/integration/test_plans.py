"""Switch plans on PostgreSQL: reviewed before use, run with one reason and one expiry,
approved by a second person, applied and audited step by step, reverted in one action
that restores what the steps replaced; steps that do not act are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from plan_service import pg_db, plans  # noqa: F401 - fixtures

from alerts.silences import SilenceStore
from stability.errors import ApprovalError, SwitchConflict, SwitchError
from stability.plan_steps import annotations_between

OUTAGE = "channel SANDBOX_A outage"
HOUR = timedelta(hours=1)


def _actions(svc, since: int = 0) -> list[tuple[str, str, str]]:
    """The stability audit log, oldest first: (actor, action, target)."""
    rows = sorted(svc.switches.audit_log(500), key=lambda e: e["id"])
    return [(e["actor"], e["action"], e["target"]) for e in rows if e["id"] > since]


def test_shipped_plans_are_stored_reviewed_once_per_org_and_weak_dependency(plans):
    names = {p.name for p in plans.plans()}
    assert names == {
        "channel SANDBOX_A outage",
        "channel SANDBOX_B outage",
        "degrade notification",
        "degrade ledger.hot_account",
        "degrade risk",
        "degrade coupon",
    }
    assert all(p.status == "reviewed" and p.reviewed_by for p in plans.plans())
    from stability.plan_seed import default_plans

    assert plans.seed(default_plans(("SANDBOX_A", "SANDBOX_B"))) == 0  # never twice


def test_a_new_plan_runs_only_after_someone_else_reviewed_it(plans):
    steps = [{"kind": "degrade", "target": "risk"}, {"kind": "annotate", "text": "risk off"}]
    plan = plans.create("risk off", steps, author="alice", description="risk brown-out")
    assert (plan.status, plan.author, plan.reviewed_by) == ("draft", "alice", None)
    with pytest.raises(ApprovalError, match="reviewed by a second person"):
        plans.run("risk off", actor="bob", reason="x", ttl=HOUR)
    with pytest.raises(ApprovalError, match="other than its author"):
        plans.review("risk off", reviewer="alice")
    assert plans.review("risk off", reviewer="bob").status == "reviewed"
    # editing the steps makes it a draft again
    assert plans.create("risk off", steps[:1], author="carol").status == "draft"
    assert [a for a in _actions(plans) if a[2] == "risk off"] == [
        ("alice", "plan_save", "risk off"),
        ("bob", "plan_review", "risk off"),
        ("carol", "plan_save", "risk off"),
    ]


@pytest.mark.parametrize(
    "step, refusal",
    [
        ({"kind": "degrade", "target": "no.such"}, "no such target"),
        ({"kind": "degrade", "target": "link.pay"}, "changes nothing"),  # a core link: no reader
        ({"kind": "set_limit", "target": "no.such.total", "rate": 5}, "no such target"),
        ({"kind": "force_breaker", "target": "risk", "state": "half"}, "forced_open"),
        ({"kind": "set_limit", "target": "risk.total", "factor": 0}, "factor"),
        ({"kind": "silence", "matchers": {}, "minutes": 30}, "matchers"),
        ({"kind": "silence", "matchers": {"bad-label": "x"}, "minutes": 30}, "matcher label"),
        ({"kind": "reboot", "target": "risk"}, "step kind"),
    ],
)
def test_a_step_that_does_not_exist_or_act_is_refused(plans, step, refusal):
    with pytest.raises(SwitchError, match=refusal) as err:
        plans.create("bad", [{"kind": "annotate", "text": "ok"}, step], author="alice")
    assert err.value.message.startswith("step 2: ")
    assert err.value.http_status == (404 if refusal == "no such target" else 422)
    assert "bad" not in {p.name for p in plans.plans()}


def test_run_approve_apply_audit_and_revert_in_one_action(plans):
    engine, mark = plans.engine, len(plans.switches.audit_log(500))
    run = plans.run(OUTAGE, actor="alice", reason="SANDBOX_A returns 502", ttl=HOUR)
    assert run.status == "pending" and plans.switches.snapshot().forced == {}
    with pytest.raises(ApprovalError, match="second person"):
        plans.approve(run.id, approver="alice")
    with pytest.raises(SwitchConflict):  # one live run per plan
        plans.run(OUTAGE, actor="carol", reason="again", ttl=HOUR)

    run = plans.approve(run.id, approver="bob")
    assert (run.status, run.approved_by) == ("active", "bob")
    snap = plans.switches.snapshot()
    assert snap.forced == {"channel.SANDBOX_A": "forced_open"}
    assert snap.limits == {"channel.SANDBOX_A.total": {"rate": 1000.0, "burst": 2000.0}}
    silences = SilenceStore(engine)
    now = plans.clock().timestamp()
    assert silences.matches({"pay_org": "SANDBOX_A", "alertname": "x"}, now) is not None
    assert silences.matches({"pay_org": "SANDBOX_B"}, now) is None
    (note,) = annotations_between(engine, plans.clock() - HOUR, plans.clock() + HOUR)
    assert note["text"] == "channel SANDBOX_A outage plan" and note["run_id"] == run.id
    steps = [a for a in _actions(plans)[mark:] if a[1].startswith("plan_")]
    assert steps == [
        ("alice", "plan_propose", OUTAGE),
        ("bob", "plan_approve", OUTAGE),
        *[("bob", "plan_step", OUTAGE)] * 4,
    ]
    switch_audit = [a for a in _actions(plans)[mark:] if not a[1].startswith("plan_")]
    assert ("alice", "propose", "channel.SANDBOX_A") in switch_audit  # strong: approved
    assert ("bob", "approve", "channel.SANDBOX_A") in switch_audit  # by the run's approver

    done = plans.revert(run.id, actor="carol", reason="SANDBOX_A is back")
    assert (done.status, done.ended_by, done.error) == ("reverted", "carol", "")
    snap = plans.switches.snapshot()
    assert (snap.forced, snap.limits) == ({}, {})
    assert silences.matches({"pay_org": "SANDBOX_A"}, plans.clock().timestamp() + 1) is None
    (note,) = annotations_between(engine, plans.clock() - HOUR, plans.clock() + HOUR)
    assert note["ends_at"] == plans.clock()
    undone = [a for a in _actions(plans)[mark:] if a[1] in ("plan_revert", "plan_undo")]
    assert undone == [("carol", "plan_revert", OUTAGE), *[("carol", "plan_undo", OUTAGE)] * 4]
    with pytest.raises(SwitchError, match="not active"):
        plans.revert(run.id, actor="carol", reason="twice")


def test_reverting_restores_the_limit_and_breaker_switches_the_steps_replaced(plans):
    sw = plans.switches
    limit = sw.propose(
        "set_limit",
        "channel.SANDBOX_A.total",
        actor="carol",
        reason="peak",
        ttl=timedelta(hours=3),
        params={"rate": 1500, "burst": 3000},
    )
    limit = sw.approve(limit.id, approver="dave")
    run = plans.run(OUTAGE, actor="alice", reason="down", ttl=HOUR)
    plans.approve(run.id, approver="bob")
    assert sw.get(limit.id).status == "reverted"
    # halved from the limit in force, not from the rule's default
    assert sw.snapshot().limits["channel.SANDBOX_A.total"] == {"rate": 750.0, "burst": 1500.0}

    plans.revert(run.id, actor="alice", reason="back")
    live = [r for r in sw.live() if r.target == "channel.SANDBOX_A.total"]
    assert [(r.params, r.status, r.actor, r.approved_by, r.expires_at) for r in live] == [
        ({"rate": 1500, "burst": 3000}, "active", "carol", "dave", limit.expires_at)
    ]
    assert sw.snapshot().forced == {}


def test_a_step_already_in_force_is_left_alone_by_apply_and_revert(plans):
    sw = plans.switches
    first = sw.propose("degrade", "notification", actor="carol", reason="slow", ttl=HOUR * 2)
    run = plans.run("degrade notification", actor="alice", reason="slow too", ttl=HOUR)
    run = plans.approve(run.id, approver="bob")
    assert run.applied[0]["done"] == {"noop": True, "existing": first.id}
    plans.revert(run.id, actor="alice", reason="done")
    assert sw.get(first.id).status == "active"  # not the plan's to end


class _Fails:
    """A step kind that always fails (an extension the service accepts like silences)."""

    def check(self, step):
        pass

    def apply(self, step, ctx):
        raise SwitchError("the fault this test injects")

    def undo(self, step, done, ctx):
        return {}


def test_a_failing_step_undoes_the_ones_before_it(plans):
    plans.handlers["annotate"] = _Fails()
    plans.create(
        "risk off",
        [{"kind": "degrade", "target": "risk"}, {"kind": "annotate", "text": "never"}],
        author="alice",
    )
    plans.review("risk off", reviewer="bob")
    run = plans.run("risk off", actor="alice", reason="brown-out", ttl=HOUR)
    with pytest.raises(SwitchError, match="failed at step 2 .*the steps before it were undone"):
        plans.approve(run.id, approver="bob")
    run = plans.get_run(run.id)
    assert run.status == "failed" and "injects" in run.error
    assert run.applied[0]["undone"]["reverted"] and plans.switches.snapshot().degraded == set()
    assert ("bob", "plan_failed", "risk off") in _actions(plans)


def test_pending_runs_are_rejected_or_withdrawn_and_expire(plans):
    run = plans.run(OUTAGE, actor="alice", reason="down", ttl=HOUR)
    assert plans.reject(run.id, actor="alice", reason="false alarm").status == "rejected"
    assert ("alice", "plan_withdraw", OUTAGE) in _actions(plans)
    run = plans.run(OUTAGE, actor="alice", reason="down", ttl=HOUR)
    plans.test_clock.advance(3601)
    with pytest.raises(ApprovalError, match="expired"):
        plans.approve(run.id, approver="bob")
    assert plans.expire_due() == 1 and plans.get_run(run.id).status == "expired"


def test_an_active_run_past_its_expiry_is_undone_by_the_expiry_job(plans):
    run = plans.run(OUTAGE, actor="alice", reason="down", ttl=HOUR)
    plans.approve(run.id, approver="bob")
    plans.test_clock.advance(3601)
    assert plans.expire_due() == 1
    run = plans.get_run(run.id)
    assert (run.status, run.ended_by) == ("expired", "system")
    assert all("undone" in e for e in run.applied)
    assert plans.live_runs() == []
