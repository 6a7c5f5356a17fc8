"""What the merchant-credential tests share: pay cores with a settable clock (one on SQLite and
on PostgreSQL; two API replicas over one PostgreSQL schema), onboarding, a trade, a row
count."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from conftest import Clock

from paycore import CreateTrade, Database, PayCore

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


PRODUCTS = [("goods", "physical")]
ORGS = ["SANDBOX_A"]


@pytest.fixture
def replicas(pg_url):
    """Two pay cores (API replicas) over one PostgreSQL schema, one settable clock, and a
    short merchant cache (0.3 s) so propagation is observable quickly."""
    clock = Clock(T0)
    cores = [PayCore(Database(pg_url), clock=clock) for _ in range(2)]
    for c in cores:
        c.merchants.cache_ttl = 0.3
    yield cores[0], cores[1], clock
    for c in cores:
        c.close()


@pytest.fixture
def one(migrated_db):
    """One pay core on SQLite and on PostgreSQL, with a settable clock."""
    core = PayCore(migrated_db, clock=Clock(T0))
    yield core
    core.lock.close()


def onboard(core, name: str = "shop", url: str | None = None):
    return core.merchants.onboard(name, products=PRODUCTS, pay_orgs=ORGS, notify_url=url)


def trade(core, mid: str, no: str):
    return core.trades.create(
        mid,
        CreateTrade(
            out_trade_no=no,
            trade_type="instant",
            amount=100,
            currency="CNY",
            user_id="u1",
            order_type="goods",
            sub_type="physical",
            pay_org_no="SANDBOX_A",
        ),
    )


def rows(db, table) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
