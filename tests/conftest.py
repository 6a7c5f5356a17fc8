"""Shared fixtures: real PostgreSQL and Redis, SQLite files, one backend matrix (the
databases in fixtures_db.py), and which tests are slow.

Locally a missing service skips its tests with a reason; under ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# the database fixtures live in fixtures_db.py; importing them here makes them everyone's
from fixtures_db import (  # noqa: F401
    IN_CI,
    db_url,
    empty_db_url,
    empty_pg_url,
    empty_sqlite_url,
    migrated_db,
    pg_databases,
    pg_server,
    pg_url,
    sqlite_template,
    sqlite_url,
)
from fixtures_db import unavailable as _unavailable
from fixtures_servers import Clock, LiveServer, free_port, wait_http  # noqa: F401

REDIS_URL = os.environ.get("PAYWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

TESTS = Path(__file__).resolve().parent
#: folders whose every test is marked slow: e2e (browsers, process stacks, drills),
#: hostile (attacks on a served stack) and integration (real services, servers and
#: processes: minutes together, though most take under a second). `make test-fast` runs
#: the rest (unit and contract tests) in under a minute; `make test` (CI) runs everything.
#: Elsewhere a slow test says so itself (``@pytest.mark.slow``).
SLOW_FOLDERS = (TESTS / "e2e", TESTS / "hostile", TESTS / "integration")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``CI=true`` the console's extra must be installed: the console tests'
    ``importorskip("streamlit")`` would otherwise skip them silently."""
    if IN_CI:
        try:
            import streamlit.testing.v1  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(f"CI=true and the console extra is missing: {exc}") from exc


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under one of :data:`SLOW_FOLDERS` ``slow``."""
    for item in items:
        if any(item.path.resolve().is_relative_to(folder) for folder in SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _nothing_lands_in_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests run in a directory of this run's own, with ``PAYWATCH_VAR_DIR`` in it: a
    relative path (``Settings()``'s default ``var``, a process started without a cwd)
    and the generated secrets never land in the checkout's ``var/``, which another run
    or a developer's ``paywatch up`` uses."""
    cwd, env_before = os.getcwd(), os.environ.get("PAYWATCH_VAR_DIR")
    own = tmp_path_factory.mktemp("cwd")
    os.chdir(own)
    os.environ["PAYWATCH_VAR_DIR"] = str(own / "var")
    try:
        yield
    finally:
        os.chdir(cwd)
        if env_before is None:
            os.environ.pop("PAYWATCH_VAR_DIR", None)
        else:
            os.environ["PAYWATCH_VAR_DIR"] = env_before


@pytest.fixture(scope="session")
def redis_server() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Redis", exc)
    return REDIS_URL


#: logical Redis databases a test can lease for itself (0 is left to a developer's own
#: platform; the lease keys live in the database of ``REDIS_URL``, which is never leased)
LEASABLE_REDIS_DBS = range(1, 15)
LEASE_SECONDS = 900  # longer than any test's timeout: a killed run's lease runs out
#: set in every database the tests have leased: only an empty database or one holding
#: this mark is ever emptied, so a developer's platform on one of these numbers keeps its
#: keys (the tests skip that database)
TEST_DATABASE_MARK = b"paywatch-test:database"


def _test_database(client) -> bool:
    """Claim a leased database for the tests: True when it is empty or already marked as
    theirs (then it is marked); False when it holds anybody else's keys."""
    try:
        if client.dbsize() and not client.exists(TEST_DATABASE_MARK):
            return False
        client.set(TEST_DATABASE_MARK, b"1")
        return True
    finally:
        client.close()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis URL on a logical database leased to this test alone.

    The lease (``SET NX`` in ``REDIS_URL``'s database) keeps every other test, of this
    suite or of another started beside it, out of that database while this test runs;
    only then is it emptied, so no test ever empties a database another one uses.
    """
    import redis

    registry = redis.Redis.from_url(redis_server)
    owner = uuid.uuid4().hex
    base = redis_server.rsplit("/", 1)[0]
    leased = None
    deadline = time.monotonic() + 60
    while leased is None:
        for db in LEASABLE_REDIS_DBS:
            lease = f"paywatch-test:redis-lease:{db}"
            if not registry.set(lease, owner, nx=True, ex=LEASE_SECONDS):
                continue
            if _test_database(redis.Redis.from_url(f"{base}/{db}")):
                leased = db
                break
            registry.delete(lease)  # someone else's data lives there: never ours to empty
        else:
            if time.monotonic() > deadline:
                pytest.fail("no Redis test database could be leased within 60 s")
            time.sleep(0.2)
    url = f"{base}/{leased}"
    own = redis.Redis.from_url(url)

    def clear() -> None:  # the leased database only: a run that died may have left keys
        for key in own.scan_iter(count=500):
            if key != TEST_DATABASE_MARK:
                own.unlink(key)

    clear()
    try:
        yield url
    finally:
        clear()
        own.close()
        key = f"paywatch-test:redis-lease:{leased}"
        if registry.get(key) == owner.encode():
            registry.delete(key)
        registry.close()


@pytest.fixture
def core(migrated_db):
    """A :class:`paycore.PayCore` over each backend, with the in-process lock."""
    from paycore import PayCore

    pc = PayCore(migrated_db)
    yield pc
    pc.lock.close()


class Shop:
    """A merchant on a :class:`PayCore` with helpers for the common flows in tests."""

    ORG = "SANDBOX_A"

    def __init__(self, core, fee_bps: int = 60) -> None:
        from itertools import count

        self.core = core
        ob = core.merchants.onboard(
            "test shop",
            products=[("goods", "physical"), ("goods", "virtual")],
            pay_orgs=[self.ORG, "SANDBOX_B"],
            fee_bps=fee_bps,
        )
        self.mid = ob.merchant.merchant_id
        self.token = ob.token
        self._n = count(1)

    def no(self, prefix: str = "t") -> str:
        return f"{prefix}{next(self._n)}"

    def trade(self, trade_type: str = "instant", amount: int = 1000, user: str = "u1", **kw):
        from paycore import CreateTrade

        kw.setdefault("out_trade_no", self.no())
        return self.core.trades.create(
            self.mid,
            CreateTrade(
                trade_type=trade_type,
                amount=amount,
                currency="CNY",
                user_id=user,
                order_type="goods",
                sub_type="physical",
                pay_org_no=self.ORG,
                **kw,
            ),
        )

    def settle(
        self, item, status: str = "success", amount: int | None = None, org: str | None = None
    ):
        from paycore import ChannelResult

        return self.core.payments.on_channel_result(
            ChannelResult(
                org or item.pay_org_no,
                item.channel_txn_no,
                status,
                item.amount if amount is None else amount,
                "CNY",
            )
        )

    def fund(self, user: str, amount: int) -> None:
        """Recharge ``user`` through the channel and settle it."""
        from paycore import PayRequest, PayTool

        t = self.trade("recharge", amount, user)
        po = self.core.payments.pay(
            self.mid, PayRequest(t.out_trade_no, (PayTool("channel", amount),))
        )
        assert self.settle(po.items[0]) == "settled"

    def balance(self, user: str) -> int:
        from paycore.ledger import balance_of, user_balance

        with self.core.db.session() as s:
            return balance_of(s, user_balance(self.mid, user, "CNY"))

    def account(self, ref) -> int:
        from paycore.ledger import balance_of

        with self.core.db.session() as s:
            return balance_of(s, ref)


@pytest.fixture
def shop(core) -> Shop:
    return Shop(core)


def table_counts(db) -> dict[str, int]:
    """Row counts of every pay table: proof that a refused request wrote nothing."""
    import sqlalchemy as sa

    from paycore.db.schema import metadata

    with db.engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
        }


@pytest.fixture
def counts():
    return table_counts


class SandboxWorld:
    """The pay core on ``db_url`` and the sandbox channel over real HTTP, with callbacks
    held back ten minutes so that only the test settles orders, and the pay core's clock
    (``clock``) in the test's hands. ``channel_now``: also set the sandbox's own clock
    (the time it books a settlement at); None keeps it on wall time."""

    def __init__(self, db_url: str, now, *, channel_now=None, seed: int = 0) -> None:
        import secrets

        from paycore import Database, PayCore
        from simulator.sandbox import create_sandbox_app
        from simulator.sandbox_config import Knobs, SandboxConfig

        self.secrets = {Shop.ORG: secrets.token_urlsafe(16)}
        self.channel_now = channel_now
        quiet = Knobs(latency_ms=0, callback_delay_ms=600_000)  # no callback during a test
        cfg = SandboxConfig(
            secrets=dict(self.secrets), admin_token="adm", seed=seed, knobs={Shop.ORG: quiet}
        )
        if channel_now is not None:
            cfg.clock = lambda: self.channel_now.timestamp()
        self.app = create_sandbox_app(cfg)
        self.server = LiveServer(self.app)
        self.db = Database(db_url)  # migrated: the db_url fixture
        self.clock = Clock(now)
        self.core = PayCore(self.db, clock=self.clock)
        self.shop = Shop(self.core)

    def __enter__(self):
        from paycore.channels.gateway import ChannelFront, build_gateway

        self.server.__enter__()
        self.gateway = build_gateway(self.server.url, self.secrets)
        self.front = ChannelFront(self.gateway, lambda org: "http://127.0.0.1:9/callback")
        self.core.channel = self.front
        return self

    def __exit__(self, *exc) -> None:
        self.front.close()
        self.gateway.close()
        self.server.__exit__(*exc)
        self.core.close()

    @property
    def sandbox(self):
        return self.app.state.sandbox

    def pay(self, amount: int):
        """Pay a new instant trade of ``amount`` through the channel; (trade, its item)."""
        from paycore import PayRequest, PayTool

        t = self.shop.trade("instant", amount)
        po = self.core.payments.pay(
            self.shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", amount),))
        )
        assert self.front.wait_idle(10)
        return t, po.items[0]
