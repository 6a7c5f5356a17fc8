"""The plan service the plan tests share: the default map for two pay orgs, the default
limit rules, switches approved by policy, silences, a settable clock (``svc.test_clock``)
on a migrated PostgreSQL database of the test's own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import Clock

from alerts.plan_silence import silence_handlers
from stability.depmap_seed import default_map
from stability.plan_seed import default_plans
from stability.plans import PlanService
from stability.policy import approval_policy, default_rules, target_checker
from stability.switches import SwitchService

ORGS = ("SANDBOX_A", "SANDBOX_B")


@pytest.fixture
def pg_db(pg_url):
    from paycore import Database

    db = Database(pg_url)
    yield db
    db.dispose()


@pytest.fixture
def plans(pg_db) -> PlanService:
    dmap, rules = default_map(ORGS), default_rules(ORGS)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    switches = SwitchService(  # as runtime.wiring builds it
        pg_db.engine,
        needs_approval=approval_policy(lambda: dmap, lambda: rules),
        targets=target_checker(lambda: dmap, lambda: rules),
        clock=clock,
    )
    svc = PlanService(
        pg_db.engine,
        switches,
        dmap=lambda: dmap,
        rules=lambda: rules,
        handlers=silence_handlers(pg_db.engine),
        clock=clock,
    )
    svc.seed(default_plans(ORGS))
    svc.test_clock = clock  # type: ignore[attr-defined]
    return svc
