"""Shadow tables: where pressure-test traffic writes, never the real pay tables.

The shadow tables have the structure of the real ones (built from the same models,
:data:`paycore.db.schema.metadata`) in a place of their own:

* **PostgreSQL**: a schema beside the real one: ``shadow`` when the real tables live
  in ``public``, else ``<real schema>_shadow``. The balanced-entry trigger of migration
  0001 is created there too, bound to the shadow ``journal_legs``.
* **SQLite**: a file beside the database, ``<name>_shadow.db``, attached as ``shadow``
  to every connection of the shadow engine (a ``connect`` event). The main database
  of those connections is an empty in-memory one: a shadow connection has no handle
  on the real file at all, and shadow writes never take the real file's write lock.

Every statement of the shadow engine runs with ``schema_translate_map={None: <shadow>}``,
so each table name is qualified with the shadow schema; on PostgreSQL the connection's
``search_path`` is the shadow schema as well, so even a raw SQL string cannot reach a
real table. Shadow data is disposable: when the models change, the shadow tables are
dropped and rebuilt (a fingerprint of their DDL is kept in the schema's comment on
PostgreSQL and in ``PRAGMA user_version`` on SQLite) instead of being migrated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.schema import CreateIndex, CreateTable

from .errors import ShadowSetupError
from .schema import LedgerSubject, metadata
from .util import insert_ignore

ATTACH_AS = "shadow"  #: the SQLite alias, and the PostgreSQL schema beside ``public``
_MARK = "paywatch shadow "
_TRIGGER_VERSION = "balanced-entry-1"
_ADVISORY_KEY = 7421006
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_BALANCED_FN = """
CREATE FUNCTION "{schema}".paywatch_check_entry_balanced() RETURNS trigger
LANGUAGE plpgsql SET search_path = "{schema}" AS $$
DECLARE total bigint;
BEGIN
    SELECT COALESCE(SUM(amount), 0) INTO total FROM journal_legs WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal entry % is unbalanced by %', NEW.entry_id, total
            USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$
"""
_BALANCED_TRIGGER = """
CREATE CONSTRAINT TRIGGER journal_legs_balanced
AFTER INSERT OR UPDATE ON "{schema}".journal_legs
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION "{schema}".paywatch_check_entry_balanced()
"""


@dataclass
class ShadowStorage:
    """The shadow engine and where its tables are (``schema`` as the translate map uses it)."""

    engine: Engine  #: runs every statement against the shadow tables
    base: Engine  #: the same engine without the translate map (owns the pool)
    schema: str
    sqlite_path: Path | None = None

    def dispose(self) -> None:
        """Close the shadow engine's connections."""
        self.base.dispose()


def fingerprint(dialect: sa.engine.Dialect) -> str:
    """A hash of the shadow tables' DDL on ``dialect`` (changes when a model changes)."""
    digest = hashlib.sha256(_TRIGGER_VERSION.encode())
    for table in metadata.sorted_tables:
        digest.update(str(CreateTable(table).compile(dialect=dialect)).encode())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            digest.update(str(CreateIndex(index).compile(dialect=dialect)).encode())
    return digest.hexdigest()[:16]


def shadow_sqlite_path(real: Engine) -> Path:
    """``<dir>/<name>_shadow.db`` next to the real SQLite file."""
    name = real.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        raise ShadowSetupError("shadow traffic needs a file database, not an in-memory one")
    path = Path(name)
    return path.with_name(f"{path.stem}_shadow.db")


def shadow_schema_name(real: Engine) -> str:
    """``shadow`` beside ``public``; ``<schema>_shadow`` beside any other schema."""
    with real.connect() as conn:
        current = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    name = ATTACH_AS if current in (None, "public") else f"{current}_shadow"
    if not _IDENT.match(name) or name == current:
        raise ShadowSetupError("cannot derive a shadow schema name from the real schema")
    return name


def open_shadow(real: Engine, *, pool_size: int = 10, max_overflow: int = 20) -> ShadowStorage:
    """Build the shadow engine next to ``real``'s database and make its tables ready.

    Safe to call from several processes at once (an advisory lock on PostgreSQL,
    ``BEGIN IMMEDIATE`` on SQLite); ledger subjects are copied from the real tables.
    """
    if real.dialect.name == "sqlite":
        storage, prepare = _sqlite_storage(real, pool_size, max_overflow), _prepare_sqlite
    elif real.dialect.name == "postgresql":
        storage, prepare = _pg_storage(real, pool_size, max_overflow), _prepare_pg
    else:  # pragma: no cover - only the two supported dialects
        raise ShadowSetupError(f"no shadow tables on {real.dialect.name}")
    try:
        prepare(storage)
        _seed_subjects(real, storage.engine)
    except BaseException:
        storage.dispose()
        raise
    return storage


def drop_shadow(real: Engine) -> None:
    """Remove the shadow tables of ``real``'s database (after a pressure test).

    No shadow engine may be open on them (close the shadow pay core first).
    """
    if real.dialect.name == "sqlite":
        path = shadow_sqlite_path(real)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = shadow_schema_name(real)
    with real.begin() as conn:
        if (_schema_comment(conn, schema) or "").startswith(_MARK):
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- SQLite --------------------------------------------------------------------------------
def _sqlite_storage(real: Engine, pool_size: int, max_overflow: int) -> ShadowStorage:
    path = shadow_sqlite_path(real).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    base = sa.create_engine(
        "sqlite://",  # an empty in-memory main database per connection; shadow is attached
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(base, "connect")
    def _attach(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is issued by the "begin" event below
        dbapi_conn.execute(f"ATTACH DATABASE ? AS {ATTACH_AS}", (str(path),))
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            dbapi_conn.execute(f"PRAGMA {ATTACH_AS}.{pragma}")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(base, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine = base.execution_options(schema_translate_map={None: ATTACH_AS})
    return ShadowStorage(engine, base, ATTACH_AS, path)


def _prepare_sqlite(storage: ShadowStorage) -> None:
    mark = int(fingerprint(storage.base.dialect)[:7], 16) or 1
    with storage.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")  # only outside a transaction: drop in any order
        try:
            if conn.exec_driver_sql(f"PRAGMA {ATTACH_AS}.user_version").scalar() != mark:
                names = conn.exec_driver_sql(
                    f"SELECT name FROM {ATTACH_AS}.sqlite_master "
                    "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                ).scalars()
                for name in list(names):
                    conn.exec_driver_sql(f'DROP TABLE {ATTACH_AS}."{name}"')
                metadata.create_all(conn)
                conn.exec_driver_sql(f"PRAGMA {ATTACH_AS}.user_version = {mark}")
            conn.commit()
        finally:
            if conn.in_transaction():
                conn.rollback()
            raw.execute("PRAGMA foreign_keys=ON")


# -- PostgreSQL ----------------------------------------------------------------------------
def _pg_storage(real: Engine, pool_size: int, max_overflow: int) -> ShadowStorage:
    schema = shadow_schema_name(real)
    base = sa.create_engine(
        real.url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800
    )

    @event.listens_for(base, "connect", insert=True)
    def _search_path(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.autocommit = autocommit

    engine = base.execution_options(schema_translate_map={None: schema})
    return ShadowStorage(engine, base, schema)


def _schema_comment(conn: Connection, schema: str) -> str | None:
    """The schema's comment ('' when it exists without one), None when it does not exist."""
    row = conn.execute(
        sa.text(
            "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') "
            "FROM pg_namespace WHERE nspname = :s"
        ),
        {"s": schema},
    ).first()
    return None if row is None else row[0]


def _prepare_pg(storage: ShadowStorage) -> None:
    schema, mark = storage.schema, _MARK + fingerprint(storage.base.dialect)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})")
        comment = _schema_comment(conn, schema)
        if comment == mark:
            return
        if comment is not None:
            tables = conn.execute(
                sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalar_one()
            if not comment.startswith(_MARK) and tables:
                raise ShadowSetupError(f"schema {schema} exists and is not a shadow schema")
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        metadata.create_all(conn)
        conn.execute(sa.text(_BALANCED_FN.format(schema=schema)))  # text(): escapes the %
        conn.exec_driver_sql(_BALANCED_TRIGGER.format(schema=schema))
        conn.exec_driver_sql(f"COMMENT ON SCHEMA \"{schema}\" IS '{mark}'")


# -- reference data ------------------------------------------------------------------------
def _seed_subjects(real: Engine, shadow: Engine) -> None:
    """Copy the chart of accounts (seeded by migration 0001) into the shadow tables."""
    cols = [c.name for c in LedgerSubject.__table__.columns]
    with real.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(LedgerSubject.__table__))]
    with Session(shadow) as s, s.begin():
        for row in rows:
            insert_ignore(s, LedgerSubject.__table__, {c: row[c] for c in cols})
