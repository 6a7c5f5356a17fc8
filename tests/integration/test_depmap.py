"""The dependency map: specs, storage on SQLite and PostgreSQL, the timeout lint, impact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stability.depmap import (
    DependencyMap,
    EdgeSpec,
    InvalidDependency,
    MapStorageError,
    ResourceSpec,
    impact,
    lint_timeouts,
)
from stability.depmap_seed import CORE_LINKS, default_map, seed_if_empty
from stability.depmap_store import DependencyMapStore
from stability.errors import StabilityError, UnknownResource


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> DependencyMapStore:
    return DependencyMapStore(engine)


@pytest.fixture
def seeded(store: DependencyMapStore) -> DependencyMap:
    """The default map, written by :func:`seed_if_empty` and read back."""
    assert seed_if_empty(store) is True
    return store.load()


def _res(*names: str) -> list[ResourceSpec]:
    return [ResourceSpec(n, "service", owner="team") for n in names]


def _chain(*names: str, grade: str = "strong", timeout_ms: int = 1000) -> list[EdgeSpec]:
    fallback = "" if grade == "strong" else "skip it"
    return [
        EdgeSpec(a, b, grade, timeout_ms, fallback=fallback)
        for a, b in zip(names, names[1:], strict=False)
    ]


# --- storage ------------------------------------------------------------------------------


def test_round_trip_upsert_load_delete_replace(store: DependencyMapStore) -> None:
    assert store.load().resources == ()
    for r in _res("api", "db"):
        store.upsert_resource(r)
    edge = EdgeSpec("api", "db", "strong", 800, retries=1, owner="sre", sla_target=0.99)
    store.upsert_edge(edge)

    m = store.load()
    assert [r.name for r in m.resources] == ["api", "db"]
    assert m.edge("api", "db") == edge
    assert m.grade("api", "db") == "strong" and m.grade("db", "api") is None
    assert m.callees("api") == ["db"] and m.callers("db") == ["api"]

    # upsert updates in place
    store.upsert_resource(ResourceSpec("db", "database", owner="dba", core_link=False))
    store.upsert_edge(EdgeSpec("api", "db", "weak", 500, fallback="read cache"))
    m = store.load()
    assert m.resource("db").kind == "database" and m.resource("db").owner == "dba"
    assert m.edge("api", "db") == EdgeSpec("api", "db", "weak", 500, fallback="read cache")
    assert len(m.edges) == 1

    assert store.delete_edge("api", "db") is True
    assert store.delete_edge("api", "db") is False
    assert store.load().edges == ()

    new = DependencyMap(_res("x", "y", "z"), _chain("x", "y", "z"))
    assert store.replace(new) is True
    assert store.load().to_dict() == new.to_dict()
    assert store.replace(default_map(), only_if_empty=True) is False
    assert store.load().to_dict() == new.to_dict()


def test_to_dict_is_console_ready(seeded: DependencyMap) -> None:
    d = seeded.to_dict()
    pay_db = next(e for e in d["edges"] if (e["caller"], e["callee"]) == ("link.pay", "database"))
    assert pay_db == {
        "caller": "link.pay",
        "callee": "database",
        "grade": "strong",
        "timeout_ms": 1000,
        "retries": 0,
        "fallback": "",
        "owner": "pay-core",
        "sla_target": 0.999,
    }
    links = [r["name"] for r in d["resources"] if r["core_link"]]
    assert sorted(links) == sorted(CORE_LINKS)


def test_edge_to_unknown_resource_is_refused(store: DependencyMapStore) -> None:
    store.upsert_resource(ResourceSpec("api", "service"))
    with pytest.raises(UnknownResource) as info:
        store.upsert_edge(EdgeSpec("api", "ghost", "strong", 100))
    assert info.value.resource == "ghost" and info.value.http_status == 404
    with pytest.raises(UnknownResource):
        DependencyMap(_res("a"), [EdgeSpec("b", "a", "strong", 100)])
    assert store.load().edges == ()


def test_cycle_is_refused_in_map_and_store(store: DependencyMapStore) -> None:
    with pytest.raises(InvalidDependency, match="cycle: a -> b -> c -> a"):
        DependencyMap(_res("a", "b", "c"), [*_chain("a", "b", "c"), *_chain("c", "a")])
    store.replace(DependencyMap(_res("a", "b", "c"), _chain("a", "b", "c")))
    with pytest.raises(InvalidDependency, match="cycle") as info:
        store.upsert_edge(EdgeSpec("c", "a", "weak", 10, fallback="none"))
    assert info.value.code == "invalid_dependency" and info.value.http_status == 422
    assert store.load().edge("c", "a") is None  # nothing written


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grade": "hard"}, "grade"),
        ({"grade": "weak"}, "fallback"),
        ({"grade": "weak", "fallback": "   "}, "fallback"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"timeout_ms": 1.5}, "timeout_ms"),
        ({"retries": -1}, "retries"),
        ({"sla_target": 1.0}, "sla_target"),
        ({"sla_target": 0}, "sla_target"),
        ({"callee": "a"}, "itself"),
        ({"caller": ""}, "caller"),
    ],
)
def test_edge_spec_validation(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"caller": "a", "callee": "b", "grade": "strong", "timeout_ms": 100}
    with pytest.raises(InvalidDependency, match=match) as info:
        EdgeSpec(**{**args, **kwargs})  # type: ignore[arg-type]
    assert isinstance(info.value, StabilityError)


def test_resource_spec_validation_and_duplicates() -> None:
    EdgeSpec("a", "b", "strong", 100, fallback="strong edges may name one")
    with pytest.raises(InvalidDependency, match="sla_target"):
        ResourceSpec("a", "service", sla_target=1.5)
    with pytest.raises(InvalidDependency, match="name"):
        ResourceSpec("x" * 65, "service")
    with pytest.raises(InvalidDependency, match="twice"):
        DependencyMap(_res("a", "a"))
    with pytest.raises(InvalidDependency, match="twice"):
        DependencyMap(_res("a", "b"), _chain("a", "b") * 2)


def test_storage_errors_are_wrapped(empty_db_url: str) -> None:
    store = DependencyMapStore(empty_db_url)  # not migrated: the tables do not exist
    try:
        with pytest.raises(MapStorageError) as info:
            store.load()
        assert info.value.http_status == 503
        assert isinstance(info.value.__cause__, sa.exc.SQLAlchemyError)
    finally:
        store.dispose()


# --- seed ---------------------------------------------------------------------------------


def test_seed_if_empty_is_idempotent(store: DependencyMapStore) -> None:
    assert seed_if_empty(store) is True
    first = store.load().to_dict()
    assert first == default_map().to_dict()
    assert seed_if_empty(store) is False
    assert seed_if_empty(store, ("OTHER",)) is False
    assert store.load().to_dict() == first


def test_seed_does_not_overwrite_an_edited_map(store: DependencyMapStore) -> None:
    store.upsert_resource(ResourceSpec("only", "service"))
    assert seed_if_empty(store) is False
    assert [r.name for r in store.load().resources] == ["only"]


def test_default_map_covers_every_pay_org() -> None:
    m = default_map(("ORG_X", "ORG_Y"), redis_lock=False)
    assert m.callees("link.pay") == [
        "channel.ORG_X",
        "channel.ORG_Y",
        "coupon",
        "database",
        "ledger.posting",
        "risk",
    ]
    assert m.edge("link.refund", "channel.ORG_Y") == EdgeSpec(
        "link.refund", "channel.ORG_Y", "strong", 3000, 0, owner="channel-team"
    )
    assert "redis" not in {r.name for r in m.resources}
    assert m.callers("coupon") == ["job.compensation", "link.pay", "link.refund"]  # issue #21
    jobs = ["job.active_query", "job.compensation", "job.reconciliation"]
    assert m.roots() == sorted([*CORE_LINKS, *jobs])
    for job, retries in zip(jobs, (1, 0, 1), strict=True):
        assert not m.resource(job).core_link and m.resource(job).kind == "job"
        coupon = ["coupon"] if job == "job.compensation" else []  # releases coupons
        assert m.callees(job) == ["channel.ORG_X", "channel.ORG_Y", *coupon, "database"]
        assert m.edge(job, "channel.ORG_X").retries == retries  # type: ignore[union-attr]
    assert m.callers("notification") == ["link.notify"]


# --- timeout lint -------------------------------------------------------------------------


def test_seeded_default_map_passes_the_lint(seeded: DependencyMap) -> None:
    assert lint_timeouts(seeded) == []
    assert lint_timeouts(default_map(("A", "B", "C", "D"))) == []


def test_lint_flags_a_seeded_bad_path(store: DependencyMapStore, seeded: DependencyMap) -> None:
    # three levels below the links: link -> ledger.posting -> ledger.hot_account -> archive
    store.upsert_resource(ResourceSpec("ledger.archive", "ledger", owner="pay-core"))
    store.upsert_edge(EdgeSpec("ledger.hot_account", "ledger.archive", "strong", 800, retries=1))
    findings = lint_timeouts(store.load())
    assert len(findings) == 1
    f = findings[0]
    assert (f.caller, f.callee) == ("ledger.posting", "ledger.hot_account")
    assert f.path == ("link.callback", "ledger.posting", "ledger.hot_account", "ledger.archive")
    assert (f.caller_timeout_ms, f.callee_spend_ms) == (1200, 1600)
    assert "1200 ms" in f.message and "1600 ms" in f.message
    assert "link.callback -> ledger.posting -> ledger.hot_account -> ledger.archive" in f.message

    # fix it: the hot account now spends 2 x 500 ms, below the 1200 ms ledger.posting allows
    store.upsert_edge(EdgeSpec("ledger.hot_account", "ledger.archive", "strong", 500, retries=1))
    assert lint_timeouts(store.load()) == []


def test_lint_equal_timeouts_overhead_and_dedup() -> None:
    # two roots reach b -> c; the finding is reported once, on the first path
    edges = [
        EdgeSpec("r1", "b", "strong", 5000),
        EdgeSpec("r2", "b", "strong", 5000),
        EdgeSpec("b", "c", "strong", 900),
        EdgeSpec("c", "d", "strong", 300, retries=2),  # c can spend 900
        EdgeSpec("c", "e", "weak", 100, fallback="skip"),
    ]
    m = DependencyMap(_res("r1", "r2", "b", "c", "d", "e"), edges)
    (f,) = lint_timeouts(m)
    assert f.path == ("r1", "b", "c", "d")
    assert (f.caller_timeout_ms, f.callee_spend_ms) == (900, 900)
    # with 100 ms overhead per hop, r -> b (5000 vs 900) still passes, leaves are checked too
    flagged = {(x.caller, x.callee) for x in lint_timeouts(m, overhead_ms=100)}
    assert flagged == {("b", "c"), ("c", "e")}
    with pytest.raises(ValueError):
        lint_timeouts(m, overhead_ms=-1)


# --- impact -------------------------------------------------------------------------------


def test_channel_failure_fails_pay_and_refund_only(seeded: DependencyMap) -> None:
    i = impact(seeded, "channel.SANDBOX_A")
    assert i.fails == [
        "job.active_query",
        "job.compensation",
        "job.reconciliation",
        "link.pay",
        "link.refund",
    ]
    assert i.degrades == []
    assert i.core_links_failing == ["link.pay", "link.refund"]
    assert i.core_links_degraded == []


def test_notification_failure_degrades_notify(seeded: DependencyMap) -> None:
    i = impact(seeded, "notification")
    assert (i.fails, i.degrades, i.core_links_degraded) == ([], ["link.notify"], ["link.notify"])


def test_database_failure_fails_every_link(seeded: DependencyMap) -> None:
    i = impact(seeded, "database")
    assert i.core_links_failing == sorted(CORE_LINKS)
    assert set(i.fails) >= {"ledger.posting", "ledger.hot_account"}
    assert i.degrades == [] and i.core_links_degraded == []


def test_hot_account_failure_degrades_through_the_ledger(seeded: DependencyMap) -> None:
    i = impact(seeded, "ledger.hot_account")
    assert i.fails == []
    assert i.degrades == ["ledger.posting", "link.callback", "link.pay", "link.refund"]


def test_transitive_strong_chains_and_weak_branches() -> None:
    resources = [*_res("b", "c", "d", "w", "top"), ResourceSpec("link.a", "link", core_link=True)]
    edges = [
        *_chain("link.a", "b", "c", "d"),
        EdgeSpec("w", "c", "weak", 100, fallback="cached"),
        EdgeSpec("top", "w", "strong", 500),
    ]
    m = DependencyMap(resources, edges)
    i = impact(m, "d")
    assert i.fails == ["b", "c", "link.a"]
    assert i.degrades == ["top", "w"]  # top fails only if w fails; w only degrades
    assert i.core_links_failing == ["link.a"]
    assert impact(m, "link.a").fails == [] and impact(m, "link.a").degrades == []
    with pytest.raises(UnknownResource):
        impact(m, "nope")


def test_concurrent_seeding_writes_once(engine: sa.Engine) -> None:
    import threading

    stores = [DependencyMapStore(engine) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[bool] = []

    def run(s: DependencyMapStore) -> None:
        barrier.wait()
        results.append(seed_if_empty(s))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False, False, False, True]
    assert stores[0].load().to_dict() == default_map().to_dict()


def test_store_over_a_paycore_database_engine(migrated_db) -> None:
    store = DependencyMapStore(migrated_db.engine)
    assert seed_if_empty(store) is True
    store.upsert_edge(EdgeSpec("link.notify", "notification", "strong", 800, owner="pay-core"))
    assert store.load().grade("link.notify", "notification") == "strong"
    assert lint_timeouts(store.load()) == []
