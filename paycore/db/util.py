"""Small dialect-aware statement helpers shared by the repositories."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, table: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when this call inserted the row.

    Uses RETURNING rather than the row count: psycopg reports -1 for such inserts.
    """
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported dialects
        raise NotImplementedError(dialect)
    key = list(table.primary_key.columns)[0]
    return session.execute(stmt.returning(key)).first() is not None
