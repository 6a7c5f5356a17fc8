"""The PostgreSQL pool keeps a connection for every thread that can hold one at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy import event

from paycore.db.engine import PG_POOL_SIZE, Database


def _hold_all(db: Database, n: int) -> None:
    """``n`` threads each check out a connection and keep it until all have one (an
    error in any of them is raised here)."""
    barrier = threading.Barrier(n)

    def hold(_: int) -> None:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            barrier.wait(timeout=30)

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(hold, range(n)))


def test_api_concurrency_reuses_connections(pg_url: str) -> None:
    db = Database(pg_url)
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda conn, rec: opened.append(conn))
    try:
        _hold_all(db, PG_POOL_SIZE)
        assert len(opened) == PG_POOL_SIZE
        _hold_all(db, PG_POOL_SIZE)  # a second burst finds them all in the pool
        assert len(opened) == PG_POOL_SIZE
        _hold_all(db, PG_POOL_SIZE + 4)  # past the pool: overflow opens, then closes again
        assert len(opened) == PG_POOL_SIZE + 4
        assert db.engine.pool.checkedin() == PG_POOL_SIZE  # type: ignore[attr-defined]
    finally:
        db.dispose()
