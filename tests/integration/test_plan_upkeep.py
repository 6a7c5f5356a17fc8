"""The worker's plan job (``runtime.worker`` ``plans``): with nobody on the Switches page,
an open breaker of a weak dependency gets its "degrade X" plan proposed by the system, and
a plan run past its expiry is ended, restoring what it replaced."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stability.breaker_stats import BreakerStatsPublisher
from stability.plan_records import SYSTEM


@pytest.fixture
def platform(pg_url):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    p = build_platform(Settings(database_url=pg_url), channels=False, role="worker")
    yield p
    p.close()


def _plan_job(platform):
    from runtime.worker import worker_jobs

    jobs, closables = worker_jobs(platform, "upkeep-test")
    for c in closables:
        c.close()
    [job] = [fn for fn, _, name in jobs if name == "plans"]
    return job


def test_an_open_weak_breaker_gets_its_plan_proposed_by_the_worker(platform):
    plans = platform.stability.plans
    assert "degrade notification" in {p.name for p in plans.plans()}  # shipped, seeded
    job = _plan_job(platform)
    job()
    assert plans.live_runs() == []  # nothing open: nothing proposed
    guard = platform.stability.guard
    for _ in range(guard.breaker_config.min_calls):
        guard.record("notification", "link.notify", False, 0.01)
    assert guard.breaker("notification").state == "open"
    publisher = BreakerStatsPublisher(platform.db.engine, guard.breakers)
    assert publisher.publish_once() >= 1
    job()
    [run] = plans.live_runs()
    assert (run.plan, run.status, run.actor) == ("degrade notification", "pending", SYSTEM)
    assert run.trigger == "breaker:notification"
    job()  # proposed once, not once per run of the job
    assert len(plans.live_runs()) == 1


def test_the_worker_ends_a_plan_run_past_its_expiry_and_restores_the_switches(platform):
    plans = platform.stability.plans
    switches = platform.stability.switches
    run = plans.run("degrade notification", actor="olive", reason="drill", ttl=timedelta(hours=1))
    plans.approve(run.id, approver="sam")
    assert "notification" in switches.snapshot().degraded
    later = plans.clock() + timedelta(hours=2)
    plans.clock = switches.clock = lambda: later
    _plan_job(platform)()
    assert plans.get_run(run.id).status == "expired"
    assert "notification" not in switches.snapshot().degraded
