"""Engines and transactions: one place that knows SQLite from PostgreSQL.

:class:`Database` takes a URL or a live :class:`~sqlalchemy.engine.Engine`. Units of
work run through :meth:`Database.run`, which retries deadlocks and serialisation
failures and wraps every other driver error into :class:`~paycore.errors.StorageError`.

With a guard attached (``Database.guard``, set by :class:`paycore.PayCore`), every
transaction of a caller the dependency map gives a ``database`` edge (the links, the
jobs) goes through ``guard.call("database", caller=...)``: degrading ``database`` or its
open breaker fails it fast (:class:`~stability.errors.DependencyFailed` naming
``database``), and on PostgreSQL the edge's timeout is the connection's
``statement_timeout`` and ``lock_timeout`` (:mod:`.timeouts`). Without a caller (the
CLI, migrations) a transaction is unguarded and has no statement timeout.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from stability.errors import DependencyFailed

from ..errors import DuplicateKey, PayCoreError, StorageError
from .guarded import edge_caller, through
from .timeouts import install_timeouts, reset_timeout, statement_timeout, want_timeout

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE_PG = {"40001", "40P01"}  # serialization_failure, deadlock_detected
#: PostgreSQL connections kept open per process: every thread of an API process that can
#: hold one at once, with ``PAYWATCH_API_THREADS`` up to anyio's 40 plus the channel
#: front's 8 (opened only as needed). With fewer, overflow connections were opened and
#: closed again under load (60 extra backends in a 12 s bench window at 20), each a fork
#: on the server and a setup in the process.
PG_POOL_SIZE = 48


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout and BEGIN IMMEDIATE so concurrent writers queue, not fail."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine_from_url(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with settings fit for the pay link."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", PG_POOL_SIZE)
    kwargs.setdefault("max_overflow", 16)
    # no pre-ping: it costs a round trip per checkout; a dead connection is invalidated
    # (with the rest of the pool) on its first error instead
    kwargs.setdefault("pool_recycle", 1800)
    return sa.create_engine(url, **kwargs)


_HOOKS = "paywatch_before_commit"


def before_commit(session: Session, hook: Callable[[Session], None]) -> None:
    """Run ``hook(session)`` once, just before this session's transaction commits."""
    session.info.setdefault(_HOOKS, []).append(hook)


def _run_hooks(session: Session) -> None:
    hooks = session.info.pop(_HOOKS, [])
    for hook in hooks:
        hook(session)


def _drop_hooks(session: Session, *_: Any) -> None:
    session.info.pop(_HOOKS, None)


_SQLITE_ID_CLASH = re.compile(r"UNIQUE constraint failed: \w+\.id$")


def is_id_collision(error: exc.IntegrityError) -> bool:
    """A generated primary key that is already taken (two processes on one Snowflake
    node id, or a clock stepped back across a restart): retrying draws a new id."""
    orig = error.orig
    diag = getattr(orig, "diag", None)
    if getattr(orig, "sqlstate", None) == "23505" and diag is not None:
        name = diag.constraint_name or ""
        return name.startswith("pk_") or name.endswith("_pkey")  # ours, or PostgreSQL's default
    return bool(_SQLITE_ID_CLASH.search(str(orig)))


def is_retryable(error: exc.DBAPIError) -> bool:
    """Deadlocks and serialisation failures are safe to retry as a whole unit of work."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if code in _RETRYABLE_PG:
        return True
    return "database is locked" in str(error.orig)


def _db_failure(error: BaseException) -> bool:
    """What counts against the ``database`` dependency: a driver error the Database could
    not retry away (a timeout, a lost connection). Business errors, duplicate keys and
    failures of other dependencies are no database failures."""
    return isinstance(error, exc.DBAPIError) or (
        isinstance(error, StorageError) and not isinstance(error, DuplicateKey)
    )


class Database:
    """A database handle: engine, session factory, and retried units of work."""

    def __init__(self, url_or_engine: str | Engine, *, max_retries: int = 5) -> None:
        if isinstance(url_or_engine, Engine):
            self.engine = url_or_engine
            self._owns_engine = False
        else:
            self.engine = create_engine_from_url(url_or_engine)
            self._owns_engine = True
        self.dialect = self.engine.dialect.name
        self.max_retries = max_retries
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # plain reads and one-statement writes; SQLite gets no autocommit: its BEGIN
        # IMMEDIATE hook would open a transaction that autocommit never closes
        autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._autocommit = (
            sessionmaker(autocommit, expire_on_commit=False)
            if self.dialect == "postgresql"
            else self._sessions
        )
        event.listen(self._sessions, "before_commit", _run_hooks)
        event.listen(self._sessions, "after_rollback", _drop_hooks)
        #: a ``stability.Guard``: transactions of the map's callers go through it
        self.guard: Any = None
        if self.dialect == "postgresql":
            install_timeouts(self.engine)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error."""
        with self._guarded(self._session) as s:
            yield s

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                with s.begin():
                    yield s
            except exc.DBAPIError as e:
                raise StorageError("database error") from e

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for plain reads: each statement stands alone (autocommit).

        It saves the BEGIN and COMMIT round trips of a transaction, a third of the cost
        of a one-row lookup. Use :meth:`session` or :meth:`run` to write, or when several
        reads must see one snapshot.
        """
        with self._guarded(self._reading) as s:
            yield s

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._autocommit() as s:
            try:
                yield s
            except exc.DBAPIError as e:
                raise StorageError("database error") from e

    def run(self, fn: Callable[[Session], T], *, one_statement: bool = False) -> T:
        """Run ``fn`` in one transaction, retrying deadlocks with jittered backoff.

        ``fn`` must be safe to run again from the start (it is, when all of its
        effects go through the session). ``one_statement``: ``fn`` sends a single
        statement, which is atomic by itself; on PostgreSQL it then runs in autocommit,
        without the BEGIN and COMMIT round trips (no before-commit hooks run).
        """
        caller = edge_caller(self.guard, "database")
        if caller is None:
            return self._run(fn, one_statement)
        guard = self.guard
        token = want_timeout(guard.timeout_s(caller, "database"))
        try:
            return through(
                guard,
                "database",
                lambda: self._run(fn, one_statement),
                caller=caller,
                failure=_db_failure,
                inner_caller=caller,
                timed=False,  # PostgreSQL cuts each statement at the edge's timeout
            )
        finally:
            reset_timeout(token)

    @contextmanager
    def _guarded(self, open_: Callable[[], Any]) -> Iterator[Session]:
        """``open_()``'s session, as the current caller's ``database`` call when guarded
        (a context manager cannot be handed to ``guard.call``: admitted, then recorded)."""
        caller = edge_caller(self.guard, "database")
        if caller is None:
            with open_() as s:
                yield s
            return
        guard = self.guard
        _, refusal = guard.admit("database", caller=caller)  # strong: raises when refused
        if refusal is not None:
            raise DependencyFailed(
                f"database is unavailable ({refusal})", resource="database", reason=refusal
            )
        limit = guard.timeout_s(caller, "database")
        start, ok = time.perf_counter(), True
        try:
            with statement_timeout(limit), open_() as s:
                yield s
        except Exception as e:
            ok = not _db_failure(e)
            raise
        finally:
            elapsed = time.perf_counter() - start  # PostgreSQL cuts each statement
            guard.record("database", caller, ok, elapsed, limit, timed=False)

    def _run(self, fn: Callable[[Session], T], one_statement: bool) -> T:
        sessions = self._autocommit if one_statement else self._sessions
        for attempt in range(self.max_retries + 1):
            try:
                with sessions() as s, s.begin():
                    return fn(s)
            except PayCoreError:
                raise
            except exc.IntegrityError as e:
                if attempt < self.max_retries and is_id_collision(e):
                    log.warning(
                        "generated id already taken (%s): retrying with a new one; "
                        "do two processes share PAYWATCH_NODE_ID?",
                        e.orig,
                    )
                    continue
                raise DuplicateKey("duplicate key") from e
            except exc.DBAPIError as e:
                if attempt < self.max_retries and is_retryable(e):
                    time.sleep(random.uniform(0.001, 0.005) * (2**attempt))
                    continue
                log.warning("database error: %s", type(e.orig).__name__)
                raise StorageError("database error") from e
        raise StorageError("database error: retries exhausted")  # pragma: no cover

    def ping(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except exc.SQLAlchemyError:
            return False

    def dispose(self) -> None:
        if self._owns_engine:
            self.engine.dispose()
