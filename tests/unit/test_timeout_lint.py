"""The effective timeouts (what the clients use, from the map) and their lint: client
numbers against their edges, each link's sequential spend against its budget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from console.views.timeout_lint import finding_rows, lint_findings, render_timeout_lint
from runtime.settings import Settings
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec, link_spend, lint_effective
from stability.depmap_seed import default_map
from stability.effective import (
    REDIS_FALLBACK,
    ClientTimeout,
    EffectiveTimeouts,
    effective_timeouts,
    lock_wait_s,
    redis_client_options,
)

PG = "postgresql+psycopg://u@h/db"


def pay_map(channel_ms: int = 3000, redis_ms: int = 200, redis_retries: int = 1) -> DependencyMap:
    names = ["link.pay", "database", "redis", "channel.A", "channel.B", "ledger.posting"]
    return DependencyMap(
        [ResourceSpec(n, n.split(".")[0], core_link=n.startswith("link.")) for n in names],
        [
            EdgeSpec("link.pay", "database", "strong", 1000),
            EdgeSpec("link.pay", "redis", "strong", redis_ms, redis_retries),
            EdgeSpec("link.pay", "channel.A", "strong", channel_ms),
            EdgeSpec("link.pay", "channel.B", "strong", 2000, 1),
            EdgeSpec("link.pay", "ledger.posting", "strong", 1500),
            EdgeSpec("ledger.posting", "database", "strong", 1000),
        ],
    )


def settings(**kw) -> SimpleNamespace:
    base = {"database_url": PG, "redis_url": "redis://h/0", "link_budgets_ms": {}}
    return SimpleNamespace(**{**base, **kw})


def test_the_redis_client_and_the_lock_wait_come_from_the_redis_edge():
    assert redis_client_options(pay_map(redis_ms=150, redis_retries=2)) == (0.15, 2)
    assert redis_client_options(default_map(redis_lock=False)) == REDIS_FALLBACK
    dmap = pay_map()
    assert lock_wait_s(dmap, "link.pay", 10.0) == 0.4  # 200 ms x (1 + 1 retry)
    assert lock_wait_s(dmap, "link.pay", 0.1) == 0.1  # never more than the core's own
    assert lock_wait_s(dmap, "link.refund", 10.0) == 10.0  # no redis edge: as configured


def test_a_links_spend_sums_its_calls_with_retries_and_counts_one_channel():
    spend, terms = link_spend(pay_map(), "link.pay", lock_wait_ms=400)
    # the slowest channel (A 3000 vs B 2000 x 2 = 4000: B), not both
    assert spend == 4000 + 1000 + 1500 + 400 + 400
    assert terms == [
        "channel.B 4000",
        "database 1000",
        "ledger.posting 1500",
        "redis 400",
        "lock wait 400",
    ]


def test_effective_numbers_on_postgresql_fit_and_the_budget_is_checked():
    dmap = pay_map()
    eff = effective_timeouts(settings(), dmap)
    assert eff.lock_wait_ms == {"link.pay": 400}
    names = {(c.name, c.caller, c.value_ms, c.attempts) for c in eff.clients}
    assert ("statement_timeout", "link.pay", 1000, 1) in names
    assert ("redis socket timeout", "link.pay", 200, 2) in names
    assert lint_effective(dmap, eff) == []  # 7300 ms of 8000
    tight = effective_timeouts(settings(link_budgets_ms={"link.pay": 7000}), dmap)
    [finding] = lint_effective(dmap, tight)
    assert finding.kind == "budget" and finding.subject == "link.pay"
    assert (finding.limit_ms, finding.spend_ms) == (7000, 7300)
    assert "exceeds its budget 7000 ms" in finding.message


def test_a_client_number_over_its_edge_is_a_finding():
    dmap = pay_map()
    slow = ClientTimeout("redis socket timeout", "link.pay", "redis", 250, 2)
    unlimited = ClientTimeout("statement_timeout", "link.pay", "database", None)
    eff = EffectiveTimeouts((slow, unlimited), {}, {"link.pay": 60_000})
    found = lint_effective(dmap, eff)
    assert [f.kind for f in found] == ["client", "client"]
    assert "250 ms x 2 attempts does not fit the edge's 200 ms x 2 attempts" in found[0].message
    assert "no limit" in found[1].message


def test_sqlite_waits_longer_than_the_database_edge_and_says_so():
    found = lint_effective(
        pay_map(), effective_timeouts(settings(database_url="sqlite:///x"), pay_map())
    )
    assert {f.subject for f in found} == {
        "sqlite busy_timeout on link.pay -> database",
        "sqlite busy_timeout on ledger.posting -> database",
    }


def test_without_redis_there_is_no_redis_number_and_no_lock_wait():
    eff = effective_timeouts(settings(redis_url=None), pay_map())
    assert eff.lock_wait_ms == {} and not [c for c in eff.clients if c.callee == "redis"]


def test_the_seeded_map_fits_its_budgets_on_postgresql_with_redis():
    dmap = default_map(redis_lock=True)
    assert lint_findings(settings(), dmap) == []


def test_link_budgets_come_from_the_environment():
    s = Settings.from_env({"PAYWATCH_LINK_BUDGET_MS": "link.pay=9000, link.refund=100"})
    assert s.link_budgets_ms == {"link.pay": 9000, "link.refund": 100}
    eff = effective_timeouts(s, pay_map())
    assert eff.link_budget_ms["link.pay"] == 9000 and eff.link_budget_ms["link.notify"] == 3000
    for bad in ("pay=9000", "link.pay=0", "link.pay=x"):
        with pytest.raises(ValueError, match="PAYWATCH_LINK_BUDGET_MS"):
            Settings.from_env({"PAYWATCH_LINK_BUDGET_MS": bad})


class FakeSt:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def success(self, text: str) -> None:
        self.calls.append(("success", text))

    def warning(self, text: str) -> None:
        self.calls.append(("warning", text))

    def dataframe(self, rows, **kw) -> None:
        self.calls.append(("dataframe", rows))


def test_the_console_shows_violations_budgets_first():
    dmap = pay_map()
    found = lint_findings(
        settings(database_url="sqlite:///x", link_budgets_ms={"link.pay": 10}), dmap
    )
    st = FakeSt()
    render_timeout_lint(st, found)
    assert st.calls[0] == ("warning", "3 timeout finding(s), 1 over a link's budget")
    rows = st.calls[1][1]
    assert rows == finding_rows(found) and rows[0]["kind"] == "link budget"
    assert rows[0]["subject"] == "link.pay" and rows[0]["limit_ms"] == 10
    clean = FakeSt()
    render_timeout_lint(clean, [])
    assert [c[0] for c in clean.calls] == ["success"]
