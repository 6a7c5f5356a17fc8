"""Test databases: the Alembic history runs once per session and backend, each test
gets a copy.

PostgreSQL: a template database (``pwt_<epoch>_<run>_tpl``) is migrated once per run;
each test gets ``CREATE DATABASE ... TEMPLATE`` of it (tens of milliseconds) and it is
dropped after the test. A database per test, rather than a schema in a shared one,
also keeps advisory locks, LISTEN channels and shadow schemas of two runs started side
by side apart. SQLite: one migrated file per session, copied into each test's tmp_path.

``pg_url``, ``sqlite_url`` and ``db_url`` are migrated (a process that migrates on
start finds nothing to do); ``empty_pg_url``, ``empty_sqlite_url`` and ``empty_db_url``
are not, for the tests of the migrations themselves and of a first start.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

PG_URL = os.environ.get("PAYWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

#: every database a run creates is named ``pwt_<epoch>_<8 hex>_<suffix>``
_OURS = re.compile(r"^pwt_(\d+)_[0-9a-f]{8}_")
#: a run's leftovers (a killed run cannot drop its own) are dropped by a later run once
#: they are older than any run could be
STALE_AFTER_S = 12 * 3600


def unavailable(what: str, exc: BaseException) -> None:
    """Skip the test (locally) or fail it (under ``CI=true``): ``what`` does not answer."""
    msg = f"{what} unavailable: {type(exc).__name__}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: a missing service is a failure)")
    pytest.skip(msg)


def _migrate(url: str) -> None:
    from paycore import Database
    from runtime.migrate import upgrade_database

    db = Database(url)
    try:
        upgrade_database(db.engine)
    finally:
        db.dispose()


class PgDatabases:
    """Creates and drops this run's databases on the server of ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        self.admin_url = sa.make_url(admin_url)
        self.engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.prefix = f"pwt_{int(time.time())}_{uuid.uuid4().hex[:8]}_"
        self._n = count(1)
        self.template: str | None = None

    def url(self, name: str) -> str:
        """The URL of database ``name`` on the same server, as the same user."""
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def _exec(self, sql: str) -> None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            conn.execute(sa.text(sql))

    def create(self, template: str = "template0") -> str:
        """A new database copied from ``template``; its name."""
        name = f"{self.prefix}{next(self._n)}"
        self._exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop(self, name: str) -> None:
        """Drop ``name``; connections a test left open (or a process it started) end."""
        self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def migrated_template(self) -> str:
        """This run's migrated template database, made at the first call."""
        if self.template is None:
            name = self.create()
            _migrate(self.url(name))
            self.template = name
        return self.template

    def ours(self) -> list[str]:
        """Every database this server holds that some test run created."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars()
            return [n for n in names if _OURS.match(n)]

    def drop_stale(self) -> None:
        """Drop what runs killed more than ``STALE_AFTER_S`` ago left behind."""
        now = time.time()
        for name in self.ours():
            m = _OURS.match(name)
            if m and now - int(m.group(1)) > STALE_AFTER_S:
                self.drop(name)

    def drop_all_of_this_run(self) -> None:
        for name in self.ours():
            if name.startswith(self.prefix):
                self.drop(name)
        self.engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL admin URL, after checking that the server answers."""
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(PG_URL)
        with eng.connect() as conn:
            conn.execute(sa.text("select 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means unavailable
        unavailable("PostgreSQL", exc)
    return PG_URL


@pytest.fixture(scope="session")
def pg_databases(pg_server: str) -> Iterator[PgDatabases]:
    """This run's databases; all of them are dropped at the end of the session."""
    dbs = PgDatabases(pg_server)
    dbs.drop_stale()
    try:
        yield dbs
    finally:
        dbs.drop_all_of_this_run()


def _pg_copy(dbs: PgDatabases, template: str) -> Iterator[str]:
    name = dbs.create(template)
    try:
        yield dbs.url(name)
    finally:
        dbs.drop(name)


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    yield from _pg_copy(pg_databases, pg_databases.migrated_template())


@pytest.fixture
def empty_pg_url(pg_databases: PgDatabases) -> Iterator[str]:
    """An empty (un-migrated) PostgreSQL database of this test's own."""
    yield from _pg_copy(pg_databases, "template0")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session (copied, never opened, by tests)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "paywatch.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file in this test's tmp_path."""
    target = tmp_path / "paywatch.db"
    for suffix in ("", "-wal"):  # no connection is open: the two files are consistent
        src = sqlite_template.with_name(sqlite_template.name + suffix)
        if src.exists():
            shutil.copyfile(src, target.with_name(target.name + suffix))
    return f"sqlite:///{target}"


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """A path for a new (un-migrated) SQLite file in this test's tmp_path."""
    return f"sqlite:///{tmp_path / 'fresh.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every storage test runs on SQLite and on PostgreSQL: a migrated database."""
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """An un-migrated database on SQLite and on PostgreSQL (tests of migrations)."""
    which = "empty_pg_url" if request.param == "postgresql" else "empty_sqlite_url"
    return request.getfixturevalue(which)


@pytest.fixture
def migrated_db(db_url: str) -> Iterator:
    """A migrated :class:`paycore.Database` on SQLite or PostgreSQL."""
    from paycore import Database

    db = Database(db_url)
    yield db
    db.dispose()
