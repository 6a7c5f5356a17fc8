"""The write side of :class:`~collectors.store.TimeSeriesStore`: samples in, rollups
folded, rows past retention pruned."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from backends.errors import DriverErrors

from .errors import StoreError
from .schema import MetricSample
from .store_sql import (
    H1,
    M1,
    RAW,
    Source,
    canonical_labels,
    names_sql,
    rollup_1h_sql,
    rollup_1m_sql,
)

__all__ = ["H1_RETENTION", "M1_RETENTION", "RAW_RETENTION", "Sample", "StoreWrites"]

RAW_RETENTION = 6 * 3600.0
M1_RETENTION = 7 * 86400.0
H1_RETENTION = 90 * 86400.0
_PG_INSERT = (
    "INSERT INTO metric_samples (ts, name, labels, value) SELECT ts, name, labels, value"
    " FROM json_to_recordset(CAST(:rows AS json))"
    " AS r(ts float8, name text, labels text, value float8)"
)

#: (ts, name, labels, value)
Sample = tuple[float, str, Mapping[str, str], float]


def _failed(what: str) -> DriverErrors:
    """A driver error as :class:`StoreError` ("``what`` failed: OperationalError")."""
    return DriverErrors(lambda exc: StoreError(f"{what} failed: {type(exc).__name__}"))


_WRITE, _ROLLUP, _PRUNE = _failed("writing samples"), _failed("rollup"), _failed("prune")


class StoreWrites:
    """Writes, rollups and pruning over ``engine`` (the store's ``__init__`` sets the
    attributes below)."""

    engine: Engine
    dialect: str
    _marks: dict[str, float]  # rollup table -> start of the last bucket folded
    _label_cache: dict[tuple[tuple[str, str], ...], str]

    def write(self, samples: Iterable[Sample]) -> int:
        """Insert samples ``(ts, name, labels, value)``; returns how many were written."""
        rows: list[dict[str, object]] = []
        finite = True  # JSON has no inf/nan: those few rows go the slow way
        for ts, name, labels, value in samples:
            text = self.labels_text(labels)
            if len(name) > 128 or len(text) > 512:
                raise StoreError(f"series too long for the store: {name} {text[:80]}...")
            value = float(value)
            finite = finite and math.isfinite(value)
            rows.append({"ts": float(ts), "name": name, "labels": text, "value": value})
        if not rows:
            return 0
        with _WRITE, self.engine.begin() as conn:
            if self.dialect == "postgresql" and finite:  # one statement, one parameter
                conn.execute(sa.text(_PG_INSERT), {"rows": json.dumps(rows)})
            else:
                conn.execute(sa.insert(MetricSample), rows)
        return len(rows)

    def labels_text(self, labels: Mapping[str, str]) -> str:
        """The canonical JSON of ``labels``, cached (the sampler writes the same sets)."""
        key = tuple(labels.items())
        text = self._label_cache.get(key)
        if text is None:
            if len(self._label_cache) >= 50_000:
                self._label_cache.clear()
            text = self._label_cache[key] = canonical_labels(labels)
        return text

    def rollup(self, now: float) -> dict[str, int]:
        """Fold raw samples before ``now`` into 1-minute buckets and those into 1-hour ones.

        Incremental: each run starts at the last bucket folded before (found in the
        table on the first run) less one bucket of grace for late writers; re-folding a
        bucket recomputes it from its inputs, so running twice changes nothing.
        Returns rows upserted per table.
        """
        try:
            with _ROLLUP, self.engine.begin() as conn:
                n1 = self._fold(conn, M1, "metric_samples", rollup_1m_sql(self.dialect), now)
                nh = self._fold(conn, H1, "metric_rollup_1m", rollup_1h_sql(self.dialect), now)
        except StoreError:
            self._marks.clear()  # re-derive from the tables next time
            raise
        return {M1.table: n1, H1.table: nh}

    def _fold(self, conn: Connection, dst: Source, src_table: str, sql: str, now: float) -> int:
        names = self.names(conn, src_table)
        if not names:
            return 0
        mark = self._marks.get(dst.table)
        if mark is None:
            mark = self._last_bucket(conn, dst.table, self.names(conn, dst.table))
        lo = 0.0 if mark is None else mark - dst.width
        stmt = sa.text(sql).bindparams(sa.bindparam("names", expanding=True))
        n = conn.execute(stmt, {"names": names, "lo": lo, "hi": now}).rowcount
        self._marks[dst.table] = math.floor(now / dst.width) * dst.width
        return max(n, 0)

    @staticmethod
    def names(conn: Connection, table: str) -> list[str]:
        """Distinct metric names in ``table`` (an index probe per name)."""
        return [r[0] for r in conn.execute(sa.text(names_sql(table)))]

    @staticmethod
    def _last_bucket(conn: Connection, table: str, names: list[str]) -> float | None:
        q = sa.text(f"SELECT MAX(bucket) FROM {table} WHERE name = :n")
        found = [conn.execute(q, {"n": n}).scalar() for n in names]
        values = [float(v) for v in found if v is not None]
        return max(values) if values else None

    def prune(
        self,
        now: float,
        raw_retention: float = RAW_RETENTION,
        m1_retention: float = M1_RETENTION,
        h1_retention: float = H1_RETENTION,
    ) -> dict[str, int]:
        """Delete rows older than their retention; returns rows deleted per table."""
        cuts = ((RAW, raw_retention), (M1, m1_retention), (H1, h1_retention))
        out: dict[str, int] = {}
        with _PRUNE, self.engine.begin() as conn:
            for src, keep in cuts:
                names = self.names(conn, src.table)
                if not names:
                    out[src.table] = 0
                    continue
                stmt = sa.text(
                    f"DELETE FROM {src.table} WHERE name IN :names AND {src.col} < :cut"
                ).bindparams(sa.bindparam("names", expanding=True))
                res = conn.execute(stmt, {"names": names, "cut": now - keep})
                out[src.table] = max(res.rowcount, 0)
        return out
