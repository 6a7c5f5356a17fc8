"""The database through the guard, against real PostgreSQL: transactions of a caller with
a ``database`` edge are guarded calls, degrading ``database`` fails them fast naming it
(503 on the API), business errors are no failures, and the edge's timeout is the
server's ``statement_timeout`` and ``lock_timeout``."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from conftest import Shop
from fastapi.testclient import TestClient

from paycore import Database, PayCore
from paycore.errors import StorageError, TradeNotFound
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import DependencyFailed
from stability.guard import Guard, calling_as
from stability.switch_records import SwitchSnapshot

LINKS = ("link.trade_create", "link.pay")


def small_map(db_ms: int = 1000) -> DependencyMap:
    links = [ResourceSpec(n, "link", core_link=True) for n in LINKS]
    return DependencyMap(
        [*links, ResourceSpec("database", "database")],
        [EdgeSpec(n, "database", "strong", db_ms) for n in LINKS],
    )


@pytest.fixture
def guarded_db(pg_url):
    db = Database(pg_url)
    guard = Guard(small_map(300))
    db.guard = guard
    yield db, guard
    db.dispose()


def _timeouts(s) -> tuple[str, str]:
    row = s.execute(
        sa.text("select current_setting('statement_timeout'), current_setting('lock_timeout')")
    )
    return tuple(row.one())


def test_a_callers_transactions_are_guarded_calls_with_the_edge_timeout(guarded_db):
    db, guard = guarded_db
    assert db.run(_timeouts) == ("0", "0")  # no caller: unguarded, no limit
    assert guard.stats.count("database", "pass") == 0
    with calling_as("link.pay"):
        assert db.run(_timeouts) == ("300ms", "300ms")
        with db.session() as s:
            assert _timeouts(s) == ("300ms", "300ms")
        with db.reading() as s:
            assert _timeouts(s) == ("300ms", "300ms")
    assert guard.stats.count("database", "pass") == 3
    assert db.run(_timeouts) == ("0", "0")  # the same pooled connection, set back


def test_a_caller_without_a_database_edge_is_unguarded(guarded_db):
    db, guard = guarded_db
    with calling_as("job.nobody"):
        assert db.run(_timeouts) == ("0", "0")
    assert guard.stats.count("database", "pass") == 0


def test_degraded_database_fails_fast_naming_it_and_runs_nothing(guarded_db):
    db, guard = guarded_db
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"database"})))
    ran = []
    with calling_as("link.pay"), pytest.raises(DependencyFailed) as info:
        db.run(lambda s: ran.append(1))
    assert info.value.resource == "database" and ran == []
    with calling_as("link.pay"), pytest.raises(DependencyFailed), db.session():
        ran.append(2)
    assert ran == [] and guard.stats.count("database", "degraded") == 2
    assert db.run(lambda s: s.execute(sa.text("select 1")).scalar_one()) == 1  # no caller


def test_business_errors_pass_through_and_are_no_database_failures(guarded_db):
    db, guard = guarded_db

    def missing(_s):
        raise TradeNotFound("no such trade")

    with calling_as("link.pay"):
        for _ in range(30):
            with pytest.raises(TradeNotFound):
                db.run(missing)
            with pytest.raises(TradeNotFound), db.session():
                raise TradeNotFound("no such trade")
    assert guard.stats.count("database", "pass") == 60
    assert guard.stats.count("database", "error") == 0
    assert guard.breaker("database").state == "closed"


def test_a_hung_statement_is_cut_at_the_edge_timeout(guarded_db):
    db, guard = guarded_db
    start = time.monotonic()
    with calling_as("link.pay"), pytest.raises(DependencyFailed) as info:
        db.run(lambda s: s.execute(sa.text("select pg_sleep(5)")))
    took = time.monotonic() - start
    assert info.value.resource == "database"
    assert isinstance(info.value.__cause__, StorageError)
    assert 0.25 < took < 2.0, took  # cut by the server at 300 ms, not after 5 s
    assert guard.stats.count("database", "error") + guard.stats.count("database", "timeout") == 1


def test_a_held_row_lock_is_given_up_at_the_edge_timeout(guarded_db, pg_url):
    db, _guard = guarded_db
    db.run(lambda s: s.execute(sa.text("create table held (id int primary key, v int)")))
    db.run(lambda s: s.execute(sa.text("insert into held values (1, 0)")))
    holder = sa.create_engine(pg_url)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.begin() as conn:
            conn.execute(sa.text("select * from held where id = 1 for update"))
            locked.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(5)
        start = time.monotonic()
        with calling_as("link.pay"), pytest.raises(DependencyFailed):
            db.run(lambda s: s.execute(sa.text("update held set v = 1 where id = 1")))
        assert 0.25 < time.monotonic() - start < 2.0
    finally:
        release.set()
        t.join()
        holder.dispose()


def test_the_api_answers_503_naming_the_database_when_it_is_degraded(pg_url):
    from paycore.api import ApiConfig, create_app

    guard = Guard(small_map())
    core = PayCore(Database(pg_url), guard=guard)
    token = core.merchants.onboard(
        "api shop", products=[("goods", "physical")], pay_orgs=[Shop.ORG]
    ).token
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"database"})))
    body = {
        "out_trade_no": "db-1",
        "trade_type": "instant",
        "amount": 100,
        "currency": "CNY",
        "user_id": "u1",
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": Shop.ORG,
    }
    try:
        with TestClient(create_app(core, ApiConfig())) as http:
            r = http.post("/v1/trades", json=body, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "dependency_unavailable:database"
            guard.apply(SwitchSnapshot(version=2))
            r = http.post("/v1/trades", json=body, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        assert guard.stats.count("database", "degraded") == 1
        assert guard.stats.count("database", "pass") >= 1
    finally:
        core.close()


class Seen:
    """A guard recorder keeping each (resource, caller) that had an outcome."""

    def __init__(self) -> None:
        self.edges: set[tuple[str, str]] = set()

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        self.edges.add((resource, caller))

    def breaker_changed(self, *args) -> None:
        pass


def test_each_route_runs_as_its_link(pg_url):
    from paycore.api import ApiConfig, create_app
    from stability.depmap_seed import default_map

    seen = Seen()
    guard = Guard(default_map(("SANDBOX_A", "SANDBOX_B"), redis_lock=False), recorders=[seen])
    core = PayCore(Database(pg_url), guard=guard)
    shop = Shop(core)
    shop.fund("u1", 5_000)  # not through the API: no caller, its database calls unguarded
    assert not {e for e in seen.edges if e[0] in ("database", "ledger.posting")}
    body = {
        "out_trade_no": "r-1",
        "trade_type": "instant",
        "amount": 300,
        "currency": "CNY",
        "user_id": "u1",
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": Shop.ORG,
    }
    auth = {"Authorization": f"Bearer {shop.token}"}
    try:
        with TestClient(create_app(core, ApiConfig())) as http:
            assert http.post("/v1/trades", json=body, headers=auth).status_code == 200
            created = set(seen.edges)
            pay = {"tools": [{"tool": "balance", "amount": 300}]}
            assert http.post("/v1/trades/r-1/pay", json=pay, headers=auth).status_code == 200
            refund = {"out_refund_no": "rf-1", "amount": 100}
            r = http.post("/v1/trades/r-1/refunds", json=refund, headers=auth)
            assert r.status_code == 200, r.text
    finally:
        core.close()
    assert ("database", "link.trade_create") in created
    assert {
        ("database", "link.pay"),
        ("ledger.posting", "link.pay"),
        ("database", "link.refund"),
        ("ledger.posting", "link.refund"),
    } <= seen.edges


def test_an_open_database_breaker_fails_fast_naming_it(guarded_db):
    db, guard = guarded_db
    guard.apply(SwitchSnapshot(version=1, forced={"database": "forced_open"}))
    with calling_as("link.pay"), pytest.raises(DependencyFailed) as info:
        db.run(lambda s: s.execute(sa.text("select 1")))
    assert (info.value.resource, info.value.reason) == ("database", "breaker_open")
    assert info.value.public_code == "dependency_unavailable:database"


def test_a_slow_database_is_slow_not_down(guarded_db):
    """Each statement under the edge's 300 ms, the transaction over it (a database slowed
    on every round trip): no timeout and no slow call for the breaker, which stays closed
    and keeps the links up; only a statement cut by the server counts against it."""
    db, guard = guarded_db

    def two_slow_statements(s) -> int:
        s.execute(sa.text("select pg_sleep(0.2)"))
        s.execute(sa.text("select pg_sleep(0.2)"))
        return 1

    with calling_as("link.pay"):
        for _ in range(guard.breaker_config.min_calls + 2):
            assert db.run(two_slow_statements) == 1
        with db.session() as s:
            two_slow_statements(s)
    assert guard.stats.count("database", "timeout") == 0
    assert guard.stats.count("database", "pass") == guard.breaker_config.min_calls + 3
    assert guard.breaker("database").state == "closed"
