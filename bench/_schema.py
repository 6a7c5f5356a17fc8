"""A throw-away, migrated PostgreSQL schema for one bench run (dropped even on failure)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from paycore.db.engine import create_engine_from_url
from runtime.migrate import upgrade_database


@contextmanager
def scratch_schema(url: str, prefix: str, log: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """Yields ``(schema, url with its search_path)``; the schema is dropped afterwards."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    log(f"schema {schema}")
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        engine = create_engine_from_url(scoped, pool_size=2)
        try:
            upgrade_database(engine)
        finally:
            engine.dispose()
        yield schema, scoped
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
        log(f"dropped schema {schema}")
