"""The routing rules in the database, on SQLite and PostgreSQL: a publish is the next
version, a stale one is refused, history and get, invalid rules write nothing, and two
routers (two API replicas) see a publish within their refresh interval."""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa

from paycore.db.schema import RoutingRuleSet
from paycore.routing import (
    RouteQuery,
    Router,
    RouteTarget,
    RoutingError,
    RoutingRule,
    RoutingStore,
    StaleRuleSet,
    UnknownRuleSet,
    rules_from_json,
)

Q = RouteQuery("M1", "goods", "physical", 1000, "CNY", None, "SANDBOX_A", frozenset({"A", "B"}))


def only(org: str, name: str = "r1") -> tuple[RoutingRule, ...]:
    return (RoutingRule(name=name, priority=1, targets=(RouteTarget(org, 100),)),)


def rows(db) -> int:
    with db.engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(RoutingRuleSet)).scalar_one()


@pytest.fixture
def store(migrated_db) -> RoutingStore:
    return RoutingStore(migrated_db)


def test_nothing_published_is_version_0_with_no_rules(store) -> None:
    cur = store.current()
    assert (cur.version, cur.rules) == (0, ())
    assert store.history() == []
    assert store.get(0).rules == ()
    with pytest.raises(UnknownRuleSet):
        store.get(1)


def test_publish_bumps_the_version_and_keeps_history(store) -> None:
    v1 = store.publish(only("A"), author="alice", reason="A takes all")
    v2 = store.publish(only("B"), author="bob", reason="move to B", expected_version=1)
    assert (v1.version, v2.version) == (1, 2)
    cur = store.current()
    assert cur.version == 2 and cur.rules == only("B")
    assert (cur.author, cur.reason) == ("bob", "move to B")
    assert cur.created_at is not None and cur.created_at.tzinfo is not None
    assert [rs.version for rs in store.history()] == [2, 1]
    assert [rs.version for rs in store.history(limit=1)] == [2]
    assert store.get(1).rules == only("A")
    assert store.current_version() == 2


def test_a_stale_expected_version_is_refused_and_writes_nothing(store, migrated_db) -> None:
    store.publish(only("A"), author="alice", reason="first")
    store.publish(only("B"), author="bob", reason="second", expected_version=1)
    with pytest.raises(StaleRuleSet) as err:
        store.publish(only("A"), author="carol", reason="based on v1", expected_version=1)
    assert err.value.http_status == 409
    assert "version 2 is current" in str(err.value)
    assert rows(migrated_db) == 2
    with pytest.raises(StaleRuleSet):  # nothing published yet is version 0
        RoutingStore(migrated_db).publish(only("A"), author="a", reason="r", expected_version=0)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"author": "", "reason": "r"}, "author"),
        ({"author": "a", "reason": "  "}, "reason"),
        ({"author": "a", "reason": "x" * 513}, "reason"),
        ({"author": "a", "reason": "bad\x00reason"}, "control"),
    ],
)
def test_publish_needs_an_author_and_a_reason(store, migrated_db, kwargs, says) -> None:
    with pytest.raises(RoutingError) as err:
        store.publish(only("A"), **kwargs)
    assert says in str(err.value)
    assert rows(migrated_db) == 0


def test_invalid_rules_are_refused_with_a_clear_error_and_nothing_written(
    store, migrated_db
) -> None:
    two = only("A", "same") + only("B", "same")
    with pytest.raises(RoutingError, match="unique: same"):
        store.publish(two, author="a", reason="dupes")
    with pytest.raises(RoutingError, match="weight"):
        store.publish(
            rules_from_json(
                '[{"name":"r","priority":1,"targets":[{"pay_org_no":"A","weight":-5}]}]'
            ),
            author="a",
            reason="r",
        )
    assert rows(migrated_db) == 0


def test_concurrent_publishes_against_one_version_one_wins(store, migrated_db) -> None:
    store.publish(only("A"), author="a", reason="base")
    results: list[object] = []

    def publish(org: str) -> None:
        try:
            results.append(
                store.publish(only(org), author="a", reason=org, expected_version=1).version
            )
        except StaleRuleSet as exc:
            results.append(exc)

    threads = [threading.Thread(target=publish, args=(o,)) for o in ("A", "B", "C", "D")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r for r in results if isinstance(r, int)) == [2]
    assert sum(isinstance(r, StaleRuleSet) for r in results) == 3
    assert rows(migrated_db) == 2


def test_two_routers_see_a_publish_within_refresh_s(store, db_url) -> None:
    from paycore import Database

    other_db = Database(db_url)  # a second replica: its own engine
    try:
        replicas = [
            Router(store, rng=random.Random(1), refresh_s=0.2),
            Router(RoutingStore(other_db), rng=random.Random(2), refresh_s=0.2),
        ]
        store.publish(only("A"), author="a", reason="A")
        for r in replicas:
            r.refresh()
            assert r.decide(Q).candidates == ("A",)
        store.publish(only("B"), author="a", reason="B")
        published = time.monotonic()
        for r in replicas:
            while r.decide(Q).candidates != ("B",):
                assert time.monotonic() - published < 1.0, "a replica kept the old rules"
                time.sleep(0.01)
            assert r.version == 2
    finally:
        other_db.dispose()


def test_a_router_keeps_its_rules_while_the_database_is_unreadable(store, migrated_db) -> None:
    store.publish(only("A"), author="a", reason="A")
    router = Router(store, refresh_s=0.0)
    assert router.decide(Q).candidates == ("A",)
    migrated_db.engine.dispose()
    with migrated_db.engine.begin() as c:
        c.execute(sa.text("DROP TABLE routing_rule_sets"))  # every read fails from now on
    assert router.decide(Q).candidates == ("A",)  # logged, kept
    assert router.version == 1
