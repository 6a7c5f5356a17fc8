"""The running platform's channel wiring: the API's front records its sends on the
platform's guard and its refusals and in-flight counts in the metrics; the worker's jobs
call the channel as their own callers. PostgreSQL and the sandbox over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

# fixtures and helpers shared with the channel protocol tests (tests/integration/sandbox_servers.py)
from sandbox_servers import (  # noqa: F401
    SECRETS,
    fast_knobs,
    knobs,
    receiver,
    request,
    sandbox,
)

from paycore.channels.guarded import GuardedGateway
from paycore.jobs.active_query import ActiveQuery
from runtime.bootstrap import build_platform
from runtime.settings import Settings
from runtime.worker import build_worker, worker_jobs

ORG = "SANDBOX_A"


@pytest.fixture
def platform(pg_url, sandbox):  # noqa: F811
    settings = Settings(
        database_url=pg_url,
        pay_orgs=(ORG,),
        channel_secrets={ORG: SECRETS[ORG]},
        sandbox_url=sandbox.url,
    )
    p = build_platform(settings, channels=True)
    yield p
    p.close()


def reached(fn: Any, cls: type, depth: int = 4) -> Any:
    """The ``cls`` instance a job callable runs (through bound methods and wrappers)."""
    if isinstance(fn, cls) or depth == 0:
        return fn if isinstance(fn, cls) else None
    inner = [getattr(fn, "__self__", None), getattr(fn, "__wrapped__", None)]
    inner += [c.cell_contents for c in getattr(fn, "__closure__", None) or ()]
    for obj in inner:
        found = reached(obj, cls, depth - 1) if obj is not None else None
        if found is not None:
            return found
    return None


def sample(platform, name: str, labels: dict[str, str]) -> float:
    value = platform.observability.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_the_fronts_sends_and_refusals_reach_the_guard_and_the_metrics(platform, sandbox) -> None:  # noqa: F811
    front, guard = platform.front, platform.stability.guard
    assert front.guard is guard
    front.max_in_flight = 1
    knobs(sandbox, ORG, latency_ms=400.0)
    front.submit(request())
    front.submit(request())  # the org's one slot is taken: refused
    assert front.refused == 1 and front.wait_idle(5) and front.acked == 1
    res = f"channel.{ORG}"
    assert (guard.stats.count(res, "pass"), guard.stats.count(res, "bulkhead_full")) == (1, 1)
    refusals = {"step": "channel_call", "outcome": "error", "reason": "bulkhead_full"}
    assert sample(platform, "paywatch_link_requests_total", refusals | {"pay_org": ORG}) == 1
    if hasattr(platform.observability.metrics, "edges"):  # the per-org families
        by_org = {"pay_org": ORG}
        assert sample(platform, "paywatch_channel_front_in_flight", by_org) == 0
        refused = sample(
            platform, "paywatch_channel_front_refused_total", by_org | {"reason": "cap"}
        )
        assert refused == 1


def test_the_workers_jobs_call_the_channel_as_themselves(platform) -> None:
    worker = build_worker(platform, worker_id="w1")
    compensation = worker.handlers.channel.gateway()
    assert isinstance(compensation, GuardedGateway)
    assert (compensation.caller, compensation.guard) == (
        "job.compensation",
        platform.stability.guard,
    )
    jobs, closables = worker_jobs(platform, "w1")
    try:
        (job,) = [fn for fn, _, name in jobs if name == "active_query"]
        active = reached(job, ActiveQuery)
        assert active is not None and active.gateway.caller == "job.active_query"
    finally:
        for c in closables:
            c.close()
