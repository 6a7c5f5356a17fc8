"""The switch service the switch tests share: the default map and two limit rules, approval by
policy, targets checked against them, a settable clock (``svc.test_clock``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import Clock

from stability.depmap_seed import default_map
from stability.limits import LimitRule
from stability.policy import approval_policy, target_checker
from stability.switches import SwitchService


@pytest.fixture
def svc(migrated_db):
    dmap = default_map(("SANDBOX_A",))
    rules = [
        LimitRule("channel.SANDBOX_A.total", "channel.SANDBOX_A", rate=10, burst=10),
        LimitRule("notification.total", "notification", rate=10, burst=10),
    ]
    clock = Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    service = SwitchService(
        migrated_db.engine,
        needs_approval=approval_policy(lambda: dmap, lambda: rules),
        clock=clock,
        targets=target_checker(lambda: dmap, lambda: rules),
    )
    service.test_clock = clock  # type: ignore[attr-defined]
    return service
