"""PostgreSQL ``statement_timeout`` and ``lock_timeout`` from the dependency map.

A guarded transaction (:meth:`paycore.db.engine.Database.run`) runs under
:func:`statement_timeout` with its ``database`` edge's timeout; when the pool hands it a
connection, the pool's checkout hook sets both server settings on that connection, for
the session (``set_config(..., false)``, committed), only when they differ from what the
connection already has: a process whose callers share one timeout pays one round trip
per connection, not one per transaction. Outside a guarded transaction the settings are
0 (no limit): migrations and the CLI are never cut.

A statement running past the limit is cancelled by the server (SQLSTATE 57014), a lock
waited for past it is given up (55P03); either is a driver error, so a
:class:`~paycore.errors.StorageError`, a failure of the ``database`` dependency.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["install_timeouts", "reset_timeout", "statement_timeout", "want_timeout"]

_wanted_ms: ContextVar[int] = ContextVar("paywatch_statement_timeout_ms", default=0)
_APPLIED = "paywatch_timeout_ms"
_SET = (
    "SELECT set_config('statement_timeout', %(ms)s, false),"
    " set_config('lock_timeout', %(ms)s, false)"
)


def want_timeout(seconds: float) -> Token[int]:
    """From now on (until :func:`reset_timeout` with the token), connections checked out
    get ``seconds`` (whole ms, at least 1) as their statement and lock timeout."""
    return _wanted_ms.set(max(1, round(seconds * 1000)))


def reset_timeout(token: Token[int]) -> None:
    """Undo :func:`want_timeout`."""
    _wanted_ms.reset(token)


@contextmanager
def statement_timeout(seconds: float) -> Iterator[None]:
    """:func:`want_timeout` for the block."""
    token = want_timeout(seconds)
    try:
        yield
    finally:
        _wanted_ms.reset(token)


def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    ms = _wanted_ms.get()
    if record.info.get(_APPLIED, 0) == ms:
        return
    cur = dbapi_conn.cursor()
    try:
        cur.execute(_SET, {"ms": f"{ms}ms"})
    finally:
        cur.close()
    if not getattr(dbapi_conn, "autocommit", False):
        dbapi_conn.commit()  # a session-level SET inside a transaction lasts only if committed
    record.info[_APPLIED] = ms


def install_timeouts(engine: Engine) -> None:
    """Install the checkout hook on a PostgreSQL engine's pool (once per engine)."""
    if not event.contains(engine, "checkout", _on_checkout):
        event.listen(engine, "checkout", _on_checkout)
