"""The ledger through the guard on each backend: a link's posting is a guarded call of
``ledger.posting`` (strong: degraded, it fails naming it and writes nothing), and the hot
accounts are ``ledger.hot_account`` (weak: degraded, hot legs are buffered for summary
posting instead of updating the hot rows)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from paycore import BizContext, PayCore
from paycore.db.schema import Account, JournalEntry
from paycore.errors import InsufficientBalance
from paycore.ledger import (
    credit,
    debit,
    drain_pending,
    fee_income,
    merchant_payable,
    pending_count,
    platform_transit,
    trial_balance,
    user_balance,
)
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import DependencyFailed
from stability.guard import Guard, calling_as
from stability.switch_records import SwitchSnapshot

CTX = BizContext("M1", "goods", "physical", "SANDBOX_A")
HOT_FALLBACK = "buffer postings for summary posting"


def ledger_map() -> DependencyMap:
    names = [("link.pay", "link"), ("database", "database")]
    names += [("ledger.posting", "ledger"), ("ledger.hot_account", "ledger")]
    return DependencyMap(
        [ResourceSpec(n, k, core_link=n.startswith("link.")) for n, k in names],
        [
            EdgeSpec("link.pay", "database", "strong", 1000),
            EdgeSpec("link.pay", "ledger.posting", "strong", 1500),
            EdgeSpec("ledger.posting", "database", "strong", 1000),
            EdgeSpec("ledger.posting", "ledger.hot_account", "weak", 1200, fallback=HOT_FALLBACK),
            EdgeSpec("ledger.hot_account", "database", "strong", 1000),
        ],
    )


@pytest.fixture
def guarded(migrated_db):
    guard = Guard(ledger_map())
    core = PayCore(migrated_db, guard=guard)
    yield core, guard
    core.lock.close()


def post(core, i: int, legs=None) -> int | None:
    legs = legs or [
        debit(merchant_payable("M1", "CNY"), 100),
        credit(platform_transit("CNY"), 90),
        credit(fee_income("CNY"), 10),
    ]
    with calling_as("link.pay"):
        return core.db.run(
            lambda s: core.ledger.post(
                s, biz_type="test", biz_key=f"k{i}", ctx=CTX, currency="CNY", legs=legs
            )
        )


def transit_total(core) -> int:
    with core.db.session() as s:
        rows = s.execute(sa.select(Account.balance).where(Account.subject_code == "2101"))
        return sum(rows.scalars())


def test_hot_legs_update_the_hot_rows_while_the_hot_account_is_up(guarded):
    core, guard = guarded
    for i in range(5):
        post(core, i)
    assert transit_total(core) == 450
    assert pending_count(core.db) == 5  # fee income is buffered by its own policy
    assert guard.stats.count("ledger.posting", "pass") == 5
    # one call per posting: admitted, then the hot rows' update timed at commit
    assert guard.stats.count("ledger.hot_account", "pass") == 5


def test_degraded_hot_account_buffers_the_hot_legs_for_summary_posting(guarded):
    core, guard = guarded
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"ledger.hot_account"})))
    for i in range(5):
        post(core, i)
    assert transit_total(core) == 0  # the hot rows were not touched ...
    assert pending_count(core.db) == 10  # ... their legs wait with the fee legs
    assert guard.stats.count("ledger.hot_account", "degraded") == 5
    report = trial_balance(core.db)
    assert report.ok and report.pending_postings == 10  # the books balance meanwhile
    assert drain_pending(core.db, core.ids) == 10
    assert transit_total(core) == 450 and trial_balance(core.db).ok


def test_a_drill_failing_the_hot_account_buffers_the_hot_legs(guarded):
    """The grade audit's fault reaches the hot account, though its call site admits and
    records around the hot rows' update instead of calling through ``guard.call``."""
    from stability.faults import FaultInjector

    core, guard = guarded
    FaultInjector.attach(guard).fail(["ledger.hot_account"])
    for i in range(3):
        post(core, i)
    assert transit_total(core) == 0 and pending_count(core.db) == 6
    assert guard.stats.count("ledger.hot_account", "error") == 3
    assert guard.stats.count("ledger.hot_account", "fallback") == 3
    FaultInjector.attach(guard).heal()
    post(core, 9)
    assert transit_total(core) == 90


def test_degraded_ledger_posting_fails_the_link_naming_it_and_writes_nothing(guarded):
    core, guard = guarded
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"ledger.posting"})))
    with pytest.raises(DependencyFailed) as info:
        post(core, 1)
    assert info.value.resource == "ledger.posting"
    with core.db.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(JournalEntry)).scalar_one() == 0
    # the failure is the ledger's: the database answered
    assert guard.stats.count("database", "error") == 0
    assert guard.stats.count("ledger.posting", "degraded") == 1


def test_a_business_error_in_a_posting_is_no_ledger_failure(guarded):
    core, guard = guarded
    broke = [debit(user_balance("M1", "u1", "CNY"), 100), credit(platform_transit("CNY"), 100)]
    for i in range(6):
        with pytest.raises(InsufficientBalance):
            post(core, i, broke)
    assert guard.stats.count("ledger.posting", "error") == 0
    assert guard.stats.count("database", "error") == 0
    assert guard.breaker("ledger.posting").state == "closed"


def test_postings_without_a_caller_are_unguarded(guarded):
    core, guard = guarded
    core.db.run(
        lambda s: core.ledger.post(
            s,
            biz_type="test",
            biz_key="job",
            ctx=CTX,
            currency="CNY",
            legs=[debit(merchant_payable("M1", "CNY"), 5), credit(platform_transit("CNY"), 5)],
        )
    )
    assert guard.stats.count("ledger.posting", "pass") == 0
    assert transit_total(core) == 5


def test_hot_rows_that_stay_slow_open_the_breaker_and_postings_buffer(pg_url):
    import threading
    import time

    from paycore import Database
    from stability.breaker import BreakerConfig

    dmap = ledger_map().with_edge(
        EdgeSpec("ledger.posting", "ledger.hot_account", "weak", 100, fallback=HOT_FALLBACK)
    )
    config = BreakerConfig(window_size=3, min_calls=3, open_s=60, half_open_probes=1)
    guard = Guard(dmap, breaker_config=config)
    core = PayCore(Database(pg_url), guard=guard)
    post(core, 0)  # the accounts exist
    holder = sa.create_engine(pg_url)

    def hold_hot_rows(locked: threading.Event) -> None:
        with holder.begin() as conn:
            conn.execute(
                sa.text("select id from accounts where subject_code = '2101' for no key update")
            )
            locked.set()
            time.sleep(0.3)

    try:
        for i in range(1, 3):  # each posting waits ~300 ms on the hot rows at commit
            locked = threading.Event()
            t = threading.Thread(target=hold_hot_rows, args=(locked,))
            t.start()
            assert locked.wait(5)
            post(core, i)
            t.join()
        # the window: the first posting's pass and two timeouts (2 of 3 failed): open
        assert guard.stats.count("ledger.hot_account", "timeout") == 2
        assert guard.breaker("ledger.hot_account").state == "open"
        before = pending_count(core.db)
        post(core, 9)
        assert pending_count(core.db) == before + 2  # the transit leg is buffered too
        assert guard.stats.count("ledger.hot_account", "fallback") == 1
    finally:
        holder.dispose()
        core.close()


def test_summary_posting_runs_as_the_hot_account(guarded):
    from paycore.jobs.ledger_jobs import summary_posting_job

    core, guard = guarded
    for i in range(3):
        post(core, i)
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"database"})))
    with pytest.raises(DependencyFailed):
        summary_posting_job(core)  # ledger.hot_account -> database is refused
    guard.apply(SwitchSnapshot(version=2))
    assert pending_count(core.db) == 3  # the fee legs wait ...
    assert summary_posting_job(core) == 3  # ... and are folded in once it is back
    assert guard.stats.count("database", "degraded") == 1
