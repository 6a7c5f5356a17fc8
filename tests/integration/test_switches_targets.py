"""Switch targets: the service refuses what names nothing; the console offers what acts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from switch_service import svc  # noqa: F401 - fixture

from stability.depmap import EdgeSpec, ResourceSpec
from stability.depmap_seed import default_map
from stability.errors import SwitchError, UnknownSwitchTarget
from stability.policy import acting_targets, default_rules, known_targets, target_checker
from stability.switches import SwitchService

TTL = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("kind", "target", "params"),
    [
        ("degrade", "loyalty", {}),  # not in the map
        ("force_breaker", "channel.NOPE", {"state": "forced_open"}),
        ("set_limit", "coupon.total", {"rate": 1}),
        ("dry_run_limit", "notification", {}),  # a resource, not a rule name
        ("set_limit", "channel.SANDBOX_A", {"rate": 1}),
    ],
)
def test_a_target_that_names_nothing_is_refused_and_nothing_is_written(svc, kind, target, params):
    with pytest.raises(UnknownSwitchTarget) as err:
        svc.propose(kind, target, actor="alice", reason="shed", ttl=TTL, params=params)
    assert isinstance(err.value, SwitchError)
    assert err.value.http_status == 404 and err.value.code == "unknown_switch_target"
    assert err.value.resource == target
    assert target in str(err.value)
    assert svc.version() == 0 and svc.listing() == [] and svc.audit_log() == []


def test_known_targets_apply(svc):
    sw = svc.propose("degrade", "notification", actor="alice", reason="slow", ttl=TTL)
    assert sw.status == "active" and svc.snapshot().degraded == {"notification"}
    lim = svc.propose("dry_run_limit", "notification.total", actor="alice", reason="trial", ttl=TTL)
    assert lim.status == "active"


def test_targets_follow_the_map_as_it_is_edited(migrated_db):
    holder = {"map": default_map(("SANDBOX_A",))}
    service = SwitchService(
        migrated_db.engine, targets=target_checker(lambda: holder["map"], lambda: [])
    )
    with pytest.raises(UnknownSwitchTarget):
        service.propose("degrade", "loyalty", actor="a", reason="r", ttl=TTL)
    dmap = holder["map"]
    holder["map"] = type(dmap)(
        [*dmap.resources, ResourceSpec("loyalty", "service")],
        [*dmap.edges, EdgeSpec("link.pay", "loyalty", "weak", 200, fallback="pay without")],
    )
    assert service.propose("degrade", "loyalty", actor="a", reason="r", ttl=TTL).status == "active"


def test_without_targets_the_service_checks_none(migrated_db):
    sw = SwitchService(migrated_db.engine).propose(
        "degrade", "anything", actor="a", reason="r", ttl=TTL
    )
    assert sw.status == "active"


def test_acting_targets_are_the_called_resources_and_their_rules():
    orgs = ("SANDBOX_A", "SANDBOX_B")
    dmap, rules = default_map(orgs), default_rules(orgs)
    acting = acting_targets(dmap, rules)
    called = [
        "channel.SANDBOX_A",
        "channel.SANDBOX_B",
        "coupon",
        "database",
        "ledger.hot_account",
        "ledger.posting",
        "notification",
        "redis",
        "risk",
    ]
    assert acting["degrade"] == acting["force_breaker"] == called
    assert not any(t.startswith(("link.", "job.")) for t in acting["degrade"])
    assert acting["set_limit"] == acting["dry_run_limit"] == sorted(r.name for r in rules)
    stray = [*rules, rules[0].__class__("gone.total", "gone", rate=1, burst=1)]
    assert "gone.total" not in acting_targets(dmap, stray)["set_limit"]
    assert "gone.total" in known_targets(dmap, stray)["set_limit"]
    known = known_targets(dmap, rules)
    assert {"link.pay", "job.compensation"} <= known["degrade"]  # exist, but act on nothing
    for kind, targets in acting.items():
        assert set(targets) <= known[kind]
