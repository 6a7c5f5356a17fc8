"""The seeded map on start: an untouched older seed is upgraded, an edited map is kept."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from stability.depmap import EdgeSpec, lint_timeouts
from stability.depmap_seed import default_map, is_default_seed, seed_or_upgrade
from stability.depmap_seed_v1 import seed_v1_map
from stability.depmap_seed_v2 import seed_v2_map
from stability.depmap_store import DependencyMapStore

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")


@pytest.fixture
def store(db_url: str) -> Iterator[DependencyMapStore]:
    engine = sa.create_engine(db_url)
    yield DependencyMapStore(engine)
    engine.dispose()


def test_an_empty_database_is_seeded_then_left_alone(store: DependencyMapStore) -> None:
    assert seed_or_upgrade(store, ORGS) == "seeded"
    assert store.load().to_dict() == default_map(ORGS).to_dict()
    assert seed_or_upgrade(store, ORGS) == "current"
    assert store.load().to_dict() == default_map(ORGS).to_dict()


@pytest.mark.parametrize("redis_lock", [True, False])
def test_the_first_seed_untouched_is_brought_to_todays_default(
    store: DependencyMapStore, redis_lock: bool
) -> None:
    store.replace(seed_v1_map(ORGS, redis_lock=redis_lock))
    stored = store.load()
    assert "coupon" in {r.name for r in stored.resources}
    assert is_default_seed(stored)
    assert seed_or_upgrade(store, ORGS, redis_lock=redis_lock) == "upgraded"
    now = store.load()
    assert now.to_dict() == default_map(ORGS, redis_lock=redis_lock).to_dict()
    # v1's coupon (called by nobody) is today's, called by the pay, refund and compensation
    assert now.callers("coupon") == ["job.compensation", "link.pay", "link.refund"]
    assert now.callers("notification") == ["link.notify"]
    assert lint_timeouts(now) == []


@pytest.mark.parametrize("redis_lock", [True, False])
def test_the_second_seed_untouched_gains_the_coupon_service(
    store: DependencyMapStore, redis_lock: bool
) -> None:
    store.replace(seed_v2_map(ORGS, redis_lock=redis_lock))
    stored = store.load()
    assert "coupon" not in {r.name for r in stored.resources}
    assert is_default_seed(stored)
    assert seed_or_upgrade(store, ORGS, redis_lock=redis_lock) == "upgraded"
    now = store.load()
    assert now.to_dict() == default_map(ORGS, redis_lock=redis_lock).to_dict()
    for caller in ("link.pay", "link.refund", "job.compensation"):
        edge = now.edge(caller, "coupon")
        assert edge is not None and edge.grade == "weak" and edge.fallback
    assert lint_timeouts(now) == []
    assert seed_or_upgrade(store, ORGS, redis_lock=redis_lock) == "current"


def test_the_second_seed_edited_is_kept(store: DependencyMapStore) -> None:
    store.replace(seed_v2_map(ORGS).with_edge(EdgeSpec("link.pay", "database", "strong", 900)))
    assert seed_or_upgrade(store, ORGS) == "kept"
    assert "coupon" not in {r.name for r in store.load().resources}


def test_a_seed_for_other_pay_orgs_takes_todays_orgs(store: DependencyMapStore) -> None:
    store.replace(default_map(("OLD_ORG",)))
    assert seed_or_upgrade(store, ORGS) == "upgraded"
    channels = sorted(r.name for r in store.load().resources if r.kind == "channel")
    assert channels == [f"channel.{o}" for o in ORGS]


def test_a_map_an_operator_edited_is_never_overwritten(store: DependencyMapStore) -> None:
    store.replace(seed_v1_map(ORGS))
    edited = store.upsert_edge(EdgeSpec("link.pay", "coupon", "weak", 250, fallback="no coupon"))
    assert not is_default_seed(edited)
    assert seed_or_upgrade(store, ORGS) == "kept"
    assert store.load().to_dict() == edited.to_dict()
    store.replace(default_map(ORGS).with_edge(EdgeSpec("link.pay", "database", "strong", 900)))
    assert seed_or_upgrade(store, ORGS) == "kept"
    assert store.load().edge("link.pay", "database").timeout_ms == 900  # type: ignore[union-attr]


def test_two_processes_starting_at_once_write_the_map_once(store: DependencyMapStore) -> None:
    store.replace(seed_v1_map(ORGS))
    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(lambda _: seed_or_upgrade(store, ORGS), range(4)))
    assert outcomes == ["current", "current", "current", "upgraded"]
    assert store.load().to_dict() == default_map(ORGS).to_dict()
