"""The dependency map in the database (tables from the migrations, not from here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from backends.errors import DriverErrors
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import MapStorageError
from stability.schema import Edge, Resource

_PG_LOCK_KEY = 7421302  # advisory lock serialising map writes on PostgreSQL
_STORAGE = DriverErrors(
    lambda exc: MapStorageError(f"dependency map storage failed: {type(exc).__name__}")
)


class DependencyMapStore:
    """The dependency map in the database. Tables come from the migrations, not from here."""

    def __init__(self, engine_or_url: Engine | str) -> None:
        if isinstance(engine_or_url, Engine):
            self.engine, self._owns_engine = engine_or_url, False
        else:
            url = sa.make_url(engine_or_url)
            args = {"timeout": 30} if url.get_backend_name() == "sqlite" else {}
            self.engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)
            self._owns_engine = True

    def dispose(self) -> None:
        """Close the engine if this store created it."""
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Connection]:
        """One transaction; SQLAlchemy errors come out as :class:`MapStorageError`."""
        with _STORAGE, self.engine.begin() as conn:
            if write and conn.dialect.name == "postgresql":  # read-check-write atomically
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            elif (
                write
                and conn.dialect.name == "sqlite"
                and not getattr(conn.connection.dbapi_connection, "in_transaction", True)
            ):  # pysqlite would only BEGIN at the first write: take the write lock now
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @staticmethod
    def _read(conn: Connection) -> DependencyMap:
        rows = conn.execute(sa.select(Resource.__table__).order_by(Resource.name))
        resources = [
            ResourceSpec(**{**row._asdict(), "core_link": bool(row.core_link)}) for row in rows
        ]
        rows = conn.execute(sa.select(Edge.__table__).order_by(Edge.caller, Edge.callee))
        edges = [EdgeSpec(**{k: v for k, v in row._asdict().items() if k != "id"}) for row in rows]
        return DependencyMap(resources, edges)

    @staticmethod
    def _empty(conn: Connection) -> bool:
        return not any(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (Resource.__table__, Edge.__table__)
        )

    def load(self) -> DependencyMap:
        """The stored map (empty when nothing is stored)."""
        with self._tx(write=False) as conn:
            return self._read(conn)

    def upsert_resource(self, spec: ResourceSpec) -> DependencyMap:
        """Add or update a resource; returns the new map."""
        with self._tx(write=True) as conn:
            cur = self._read(conn)
            new = DependencyMap(
                [*(r for r in cur.resources if r.name != spec.name), spec], cur.edges
            )
            where = Resource.name == spec.name
            if conn.execute(sa.select(Resource.name).where(where)).first():
                conn.execute(sa.update(Resource).where(where).values(**asdict(spec)))
            else:
                conn.execute(sa.insert(Resource).values(**asdict(spec)))
            return new

    def upsert_edge(self, spec: EdgeSpec) -> DependencyMap:
        """Add or update an edge; returns the new map.

        :class:`UnknownResource` when an end is not stored, :class:`InvalidDependency` when
        the edge would close a cycle.
        """
        with self._tx(write=True) as conn:
            new = self._read(conn).with_edge(spec)
            where = sa.and_(Edge.caller == spec.caller, Edge.callee == spec.callee)
            if conn.execute(sa.select(Edge.id).where(where)).first():
                conn.execute(sa.update(Edge).where(where).values(**asdict(spec)))
            else:
                conn.execute(sa.insert(Edge).values(**asdict(spec)))
            return new

    def delete_edge(self, caller: str, callee: str) -> bool:
        """Remove ``caller -> callee``; False when there was no such edge."""
        with self._tx(write=True) as conn:
            where = sa.and_(Edge.caller == caller, Edge.callee == callee)
            return bool(conn.execute(sa.delete(Edge).where(where)).rowcount)

    def replace_if(self, dmap: DependencyMap, stale: Callable[[DependencyMap], bool]) -> bool:
        """Store ``dmap`` when ``stale(stored map)`` says so, read and write in one
        transaction (two processes starting at once cannot both decide on an old read).
        Returns whether the map was written."""
        with self._tx(write=True) as conn:
            if not stale(self._read(conn)):
                return False
            self._write(conn, dmap)
            return True

    def replace(self, dmap: DependencyMap, *, only_if_empty: bool = False) -> bool:
        """Store ``dmap`` in place of everything stored, in one transaction.

        With ``only_if_empty`` nothing is written unless both tables are empty.
        Returns whether the map was written.
        """
        with self._tx(write=True) as conn:
            if only_if_empty and not self._empty(conn):
                return False
            self._write(conn, dmap)
            return True

    @staticmethod
    def _write(conn: Connection, dmap: DependencyMap) -> None:
        conn.execute(sa.delete(Edge))
        conn.execute(sa.delete(Resource))
        if dmap.resources:
            conn.execute(sa.insert(Resource), [asdict(r) for r in dmap.resources])
        if dmap.edges:
            conn.execute(sa.insert(Edge), [asdict(e) for e in dmap.edges])
