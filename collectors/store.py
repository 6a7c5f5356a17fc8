"""The database time-series store: raw samples, 1-minute and 1-hour rollups.

The :class:`~collectors.sampler.Sampler` writes a registry's samples here every few
seconds; :meth:`TimeSeriesStore.rollup` folds them into rollups (last/min/max/sum/count
and the exact increase ``inc`` per bucket, upserted, so it is idempotent and can run from
several processes) and :meth:`TimeSeriesStore.prune` drops what is past retention.

Counts (:meth:`~TimeSeriesStore.increase`, so ``count``, ``ratio`` and ``quantile``) are
stitched from every resolution, each sample counted once (:func:`.store_math.plan`).
Rates, gauges and charts read one resolution: raw samples for windows under 2 h,
1-minute rollups up to 2 days, 1-hour rollups beyond (and a coarser one whenever the
finer one is already pruned at that time).

Counters are stored cumulative, as exposed; a decrease is a counter reset (a process
restart), and the increase across it is the value after the reset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from backends.errors import DriverErrors

from .errors import QueryBackendError, QueryError
from .query import Labels, MetricsQuery, Series, check_agg
from .store_eval import group_key, matches, parse_labels, points, series_intervals, split_rows
from .store_math import (
    Key,
    Level,
    Piece,
    add_line,
    check_q,
    div,
    latest_points,
    plan,
    quantile_points,
    quantiles,
    range_kind,
    series_key,
    to_series,
)
from .store_sql import (
    H1,
    M1,
    RAW,
    Source,
    increase_sql,
    intervals_sql,
    latest_sql,
    match_clause,
    newest_bucket_sql,
    raw_piece_sql,
    rollup_piece_sql,
    rows_sql,
)
from .store_write import H1_RETENTION, M1_RETENTION, RAW_RETENTION, Sample, StoreWrites

__all__ = ["GAP", "H1_RETENTION", "M1_RETENTION", "RAW_RETENTION", "Sample", "TimeSeriesStore"]

M1_FROM = 2 * 3600.0  # windows this long or longer read 1-minute rollups
H1_FROM = 2 * 86400.0  # ... and this long or longer, 1-hour rollups
MAX_POINTS = 11_000  # as Prometheus' query_range
#: how far back a raw read looks for a sample's predecessor where the minute rollups do
#: not hold it yet (rollups lagging or not run yet)
GAP = 300.0
_SOURCES = {RAW.name: RAW, M1.name: M1, H1.name: H1}
#: a database error on a read, as the query's error
_READ = DriverErrors(lambda exc: QueryBackendError(f"metrics query failed: {type(exc).__name__}"))


class TimeSeriesStore(StoreWrites, MetricsQuery):
    """Metrics in SQL (SQLite or PostgreSQL) through the tables of :mod:`collectors.schema`.

    ``sample_interval``: the sampler's interval (how far before a window a baseline
    sample may lie). ``clock``: wall time, to know which resolutions still hold a time.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        sample_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        raw_retention: float = RAW_RETENTION,
        m1_retention: float = M1_RETENTION,
        h1_retention: float = H1_RETENTION,
        gap: float = GAP,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sample_interval = sample_interval
        self.clock = clock
        self.raw_retention = raw_retention
        self.m1_retention = m1_retention
        self.h1_retention = h1_retention
        self.gap = max(gap, 2.0 * sample_interval)
        self._marks: dict[str, float] = {}  # rollup table -> start of the last bucket folded
        self._label_cache: dict[tuple[tuple[str, str], ...], str] = {}

    # -- choosing a resolution -------------------------------------------------------------
    def source_for(self, span: float, oldest: float) -> Source:
        """Raw samples for spans under 2 h, 1-minute rollups under 2 days, else 1-hour;
        coarser when the finer resolution is already pruned at ``oldest``."""
        now = self.clock()
        if span < M1_FROM and oldest >= now - self.raw_retention:
            return RAW
        if span < H1_FROM and oldest >= now - self.m1_retention:
            return M1
        return H1

    def _baseline(self, src: Source) -> float:
        """How far before a window a row may lie and still serve as its baseline."""
        return 2.0 * (src.width or self.sample_interval)

    def _params(
        self, src: Source, metric: str, lo: float, hi: float, match: Labels | None
    ) -> tuple[str, dict[str, Any]]:
        msql, params = match_clause(match)
        params |= {"name": metric, "lo": lo, "hi": hi, "clo": lo - src.width, "now": self.clock()}
        return msql, params

    def _run(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with _READ, self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).fetchall())

    # -- single-point queries --------------------------------------------------------------
    def _windows(
        self, metric: str, window: float, at: float, match: Labels | None
    ) -> list[tuple[dict[str, str], float, float]]:
        """Per matching series: (labels, increase over (at - window, at], seconds the
        rows behind that increase span)."""
        if window <= 0:
            raise QueryError("window must be positive")
        src = self.source_for(window, at - window)
        msql, params = self._params(src, metric, at - window - self._baseline(src), at, match)
        params["dlo"] = at - window
        cache: dict[str, dict[str, str]] = {}
        out = []
        for text, inc, t0, t1 in self._run(increase_sql(src, msql), params):
            labels = parse_labels(text, cache)
            if matches(labels, match):
                span = 0.0 if t0 is None or t1 is None else float(t1) - float(t0)
                out.append((labels, float(inc or 0.0), span))
        return out

    def increase(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> dict[tuple[str, ...], float]:
        """Counter increase over (at - window, at] per group of the ``by`` labels.

        Exact to the sample: every sample in the window counts its increase against the
        sample before it in its series, however long before (a decrease is a reset: the
        value itself; a series' first sample: nothing), read from whichever resolution
        holds it, stitched (:meth:`window_plan`): whole hours from the 1-hour rollups,
        whole minutes from the 1-minute ones, raw samples for the newest minutes (not
        folded yet) and the window's first minute. A start older than the raw and minute
        retention widens to the minute or hour that holds it.
        """
        out: dict[tuple[str, ...], float] = {}
        for labels, inc in self._stitched(metric, window, at, match):
            key = group_key(labels, by)
            out[key] = out.get(key, 0.0) + inc
        return out

    def window_plan(self, metric: str, *, window: float, at: float) -> list[Piece]:
        """The pieces :meth:`increase` reads for ``metric`` over (at - window, at]."""
        if window <= 0:
            raise QueryError("window must be positive")
        with _READ, self.engine.connect() as conn:
            return self._plan(conn, metric, at - window, at)[0]

    def _plan(
        self, conn: Connection, metric: str, lo: float, hi: float
    ) -> tuple[list[Piece], float]:
        """The pieces, and the time before which the 1-minute rollup is complete."""
        now = self.clock()
        until = {}
        for src in (M1, H1):
            newest = conn.execute(sa.text(newest_bucket_sql(src.table)), {"name": metric}).scalar()
            # the newest bucket is still filling and the one before may miss a late writer
            until[src.name] = -math.inf if newest is None else float(newest) - src.width
        levels = (
            Level(H1.name, H1.width, now - self.h1_retention, until[H1.name]),
            Level(M1.name, M1.width, now - self.m1_retention, until[M1.name]),
            Level(RAW.name, 0.0, now - self.raw_retention + self.gap),
        )
        return plan(lo, hi, levels), until[M1.name]

    def _raw_bounds(self, lo: float, m1_until: float) -> tuple[float, float]:
        """Where a raw piece from ``lo`` reads samples from (``flo``) and before which the
        1-minute rollup gives each series' previous value (``mlo``): from the minute
        holding ``lo`` when the rollup is complete before it (exact), else from
        :attr:`gap` seconds back (the rollups lag behind)."""
        start = math.floor(lo / M1.width) * M1.width
        if start <= m1_until:
            return start, start
        if m1_until >= lo - self.gap:
            return m1_until, m1_until
        flo = lo - self.gap
        return flo, math.floor(flo / M1.width) * M1.width

    def _stitched(
        self, metric: str, window: float, at: float, match: Labels | None
    ) -> list[tuple[dict[str, str], float]]:
        """Per matching series: (labels, increase over the window)."""
        if window <= 0:
            raise QueryError("window must be positive")
        msql, mparams = match_clause(match)
        acc: dict[str, float] = {}
        with _READ, self.engine.connect() as conn:
            pieces, m1_until = self._plan(conn, metric, at - window, at)
            for piece in pieces:
                params = {**mparams, "name": metric, "lo": piece.lo, "hi": piece.hi}
                if piece.name == RAW.name:
                    sql = raw_piece_sql(msql, lo_open=piece.lo_open, hi_closed=piece.hi_closed)
                    params["flo"], params["mlo"] = self._raw_bounds(piece.lo, m1_until)
                else:
                    sql = rollup_piece_sql(_SOURCES[piece.name], msql)
                for text, inc in conn.execute(sa.text(sql), params):
                    acc[text] = acc.get(text, 0.0) + float(inc or 0.0)
        cache: dict[str, dict[str, str]] = {}
        out = []
        for text, inc in acc.items():
            labels = parse_labels(text, cache)
            if matches(labels, match):
                out.append((labels, inc))
        return out

    def count(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        return to_series(by, self.increase(metric, window=window, at=at, match=match, by=by))

    def rate(
        self,
        metric: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        """Per series, the increase over the time its rows span (about ``window``; less
        when the series is younger or its newest rows are missing), summed per group."""
        out: dict[tuple[str, ...], float] = {}
        for labels, inc, span in self._windows(metric, window, at, match):
            key = group_key(labels, by)
            out[key] = out.get(key, 0.0) + (inc / span if span > 0 else 0.0)
        return to_series(by, out)

    def ratio(
        self,
        numerator: str,
        denominator: str,
        *,
        window: float,
        at: float,
        match_num: Labels | None = None,
        match_den: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        num = self.increase(numerator, window=window, at=at, match=match_num, by=by)
        den = self.increase(denominator, window=window, at=at, match=match_den, by=by)
        # the denominator's groups (as PromQL's division): no numerator increase is 0
        return to_series(by, {k: div(num.get(k, 0.0), d) for k, d in den.items()})

    def quantile(
        self,
        q: float,
        histogram: str,
        *,
        window: float,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
    ) -> list[Series]:
        check_q(q)
        inc = self.increase(
            f"{histogram}_bucket", window=window, at=at, match=match, by=(*by, "le")
        )
        return to_series(by, quantiles(q, inc))

    def latest(
        self,
        metric: str,
        *,
        at: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
        max_age: float = 300.0,
        agg: str = "sum",
    ) -> list[Series]:
        reduce = check_agg(agg)
        src = self.source_for(max_age, at - max_age)
        msql, params = self._params(src, metric, at - max_age, at, match)
        rows = self._run(latest_sql(src, msql), params)
        if not rows and src is not RAW and at >= self.clock() - self.raw_retention:
            # the newest samples are not folded into the rollups yet (a database younger
            # than a rollup bucket): without this, a fresh platform reads "absent"
            span = min(max_age, self.raw_retention)
            msql, params = self._params(RAW, metric, at - span, at, match)
            rows = self._run(latest_sql(RAW, msql), params)
        cache: dict[str, dict[str, str]] = {}
        groups: dict[tuple[str, ...], list[float]] = {}
        for text, value in rows:
            labels = parse_labels(text, cache)
            if matches(labels, match):
                groups.setdefault(group_key(labels, by), []).append(float(value))
        return to_series(by, {k: reduce(v) for k, v in groups.items()})

    # -- charts ----------------------------------------------------------------------------
    def range(
        self,
        metric_kind: str,
        metric: str,
        *,
        start: float,
        end: float,
        step: float,
        match: Labels | None = None,
        by: tuple[str, ...] = (),
        window: float = 300.0,
    ) -> dict[Key, list[tuple[float, float | None]]]:
        """Chart series from one fetch; each point is what a single query at that time
        would answer, with a window of at least ``step`` (no gaps between points) and
        at least a bucket of the resolution read."""
        if step <= 0 or end < start or window <= 0:
            raise QueryError("range needs step > 0, end >= start and window > 0")
        ts = points(start, end, step)
        if len(ts) > MAX_POINTS:
            raise QueryError(f"range of {len(ts)} points; at most {MAX_POINTS}")
        q = range_kind(metric_kind)
        src = self.source_for(end - start + window, start - window)
        win = max(window, step, src.width)
        base = self._baseline(src)
        if metric_kind == "latest":
            msql, params = self._params(src, metric, start - win, end, match)
            series = split_rows(self._run(rows_sql(src, msql), params), match, deltas=False)
            return latest_points(series, by, ts, win)
        name = metric if q is None else f"{metric}_bucket"
        keys = by if q is None else (*by, "le")
        msql, params = self._params(src, name, start - win - base, end, match)
        sums: dict[tuple[str, ...], list[float | None]] = {}
        spacing = src.width or self.sample_interval
        m = win / step
        if step >= 4 * spacing and abs(m - round(m)) < 1e-9:
            # many rows per point: sum them per chart interval in SQL
            params |= {"start": start, "step": step}
            rows = self._run(intervals_sql(src, msql, self.dialect), params)
            mb = math.ceil(base / step)
            for labels, ivs in series_intervals(rows, match).values():
                line = ivs.increases(len(ts), round(m), mb, per_second=q is None)
                add_line(sums.setdefault(group_key(labels, keys), [None] * len(ts)), line)
        else:  # about a row per point: walk the index in time order, no sort in SQL
            series = split_rows(self._run(rows_sql(src, msql), params), match, deltas=True)
            for labels, rows_ in series.values():
                line = rows_.increases(ts, win, base, per_second=q is None)
                add_line(sums.setdefault(group_key(labels, keys), [None] * len(ts)), line)
        if q is None:
            return {
                series_key(by, k): list(zip(ts, vals, strict=True))
                for k, vals in sorted(sums.items())
            }
        return quantile_points(q, by, sums, ts)
