"""The SQL of the time-series store, one place for both dialects.

Three sources hold the same series at different resolutions: raw samples, 1-minute and
1-hour rollups. A query reads one of them through a :class:`Source`, which names the
table, its time column and which columns stand for value/min/max. Counter increases are
computed in SQL with ``LAG`` (a decrease is a counter reset), so a query returns one row
per series (or per series and time, for charts), never the raw samples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "H1",
    "M1",
    "RAW",
    "Source",
    "bucket_expr",
    "canonical_labels",
    "deltas_sql",
    "increase_sql",
    "intervals_sql",
    "latest_sql",
    "match_clause",
    "names_sql",
    "newest_bucket_sql",
    "raw_piece_sql",
    "rollup_1h_sql",
    "rollup_1m_sql",
    "rollup_piece_sql",
    "rows_sql",
]


@dataclass(frozen=True)
class Source:
    """One resolution of the stored series.

    Every row stands for a reading of the series at time ``e``: a raw sample's ``ts``;
    a rollup bucket's end, or ``:now`` for the bucket still filling (its ``last`` is
    the newest value folded). Windows are taken on ``e``; the indexed column ``col``
    only narrows the scan.
    """

    name: str
    table: str
    col: str  # the indexed time column: ts (raw) or bucket (start of a rollup bucket)
    width: float  # bucket width; 0 for raw samples
    value: str  # the value a counter/gauge has at the row's time
    mn: str
    mx: str
    tiebreak: str  # orders rows of equal time
    order: str  # row order within a series (a rollup's bucket: the unique index's order)

    @property
    def time_expr(self) -> str:
        if not self.width:
            return self.col
        end = f"{self.col} + {float(self.width)!r}"
        return f"CASE WHEN {end} > :now THEN :now ELSE {end} END"


RAW = Source("raw", "metric_samples", "ts", 0.0, "value", "value", "value", "id", "e, k")
M1 = Source("1m", "metric_rollup_1m", "bucket", 60.0, '"last"', '"min"', '"max"', "bucket", "k")
H1 = Source("1h", "metric_rollup_1h", "bucket", 3600.0, '"last"', '"min"', '"max"', "bucket", "k")


def canonical_labels(labels: Mapping[str, str]) -> str:
    """The stored form of a label set: JSON with sorted keys and no spaces."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def match_clause(match: Mapping[str, str] | None) -> tuple[str, dict[str, Any]]:
    """A prefilter on the canonical JSON: ``"key":"value"`` must occur in ``labels``.

    Exact in PostgreSQL; SQLite's LIKE ignores ASCII case, so callers re-check matches
    on the parsed labels.
    """
    if not match:
        return "", {}
    sql: list[str] = []
    params: dict[str, Any] = {}
    for i, (key, value) in enumerate(sorted(match.items())):
        pair = json.dumps(str(key)) + ":" + json.dumps(str(value))
        params[f"m{i}"] = "%" + _escape_like(pair) + "%"
        sql.append(f" AND labels LIKE :m{i} ESCAPE '\\'")
    return "".join(sql), params


def _rows(src: Source, match_sql: str) -> str:
    """The rows of one metric read at a time ``e`` in (:lo, :hi] (``:clo`` bounds the
    index scan: ``:lo`` less a bucket)."""
    return (
        f"SELECT labels, e, v, mn, mx, k FROM (SELECT labels, {src.time_expr} AS e,"
        f" {src.value} AS v, {src.mn} AS mn, {src.mx} AS mx, {src.tiebreak} AS k"
        f" FROM {src.table} WHERE name = :name AND {src.col} > :clo AND {src.col} <= :hi"
        f"{match_sql}) AS r0 WHERE e > :lo AND e <= :hi"
    )


def deltas_sql(src: Source, match_sql: str) -> str:
    """Per row: labels, time ``c``, the previous row's time ``pc`` and the counter
    increase since the previous row ``d`` (0 for a series' first row; after a reset, the
    value itself, plus what was counted before the reset inside a rollup bucket when its
    max shows it)."""
    over = f"OVER (PARTITION BY labels ORDER BY {src.order})"
    return (
        "SELECT labels, e AS c, pe AS pc, k, CASE WHEN prev IS NULL THEN 0.0"
        " WHEN v >= prev AND mn >= prev THEN v - prev"
        " ELSE v + CASE WHEN mx > prev AND mx > v THEN mx - prev ELSE 0.0 END END AS d"
        f" FROM (SELECT labels, e, k, v, mn, mx, LAG(v) {over} AS prev, LAG(e) {over} AS pe"
        f" FROM ({_rows(src, match_sql)}) AS r) AS s"
    )


def increase_sql(src: Source, match_sql: str) -> str:
    """Per series: the increase of the rows after ``:dlo`` (earlier rows are baselines)
    and the time it spans (from the row before the first of them to the last)."""
    return (
        "SELECT labels, SUM(CASE WHEN c > :dlo THEN d ELSE 0.0 END) AS inc,"
        " MIN(CASE WHEN c > :dlo THEN COALESCE(pc, c) END) AS t0,"
        " MAX(CASE WHEN c > :dlo THEN c END) AS t1"
        f" FROM ({deltas_sql(src, match_sql)}) AS x GROUP BY labels"
    )


def latest_sql(src: Source, match_sql: str) -> str:
    """Per series: the newest value read in (:lo, :hi]."""
    return (
        "SELECT labels, v FROM (SELECT labels, v, ROW_NUMBER() OVER"
        f" (PARTITION BY labels ORDER BY {src.order.replace(',', ' DESC,')} DESC) AS rn"
        f" FROM ({_rows(src, match_sql)}) AS r) AS s WHERE rn = 1"
    )


def rows_sql(src: Source, match_sql: str) -> str:
    """Every row (labels, e, v, mn, mx) in time order, series interleaved: the order the
    (name, time) index gives, so PostgreSQL need not sort by labels (charts)."""
    order = "e, k" if src is RAW else "k"
    return f"SELECT labels, e, v, mn, mx FROM ({_rows(src, match_sql)}) AS r ORDER BY {order}"


def intervals_sql(src: Source, match_sql: str, dialect: str) -> str:
    """Per series and chart interval ``j`` (rows with time in (start + (j-1) step,
    start + j step]): increase, first baseline time, last time. Many rows per interval
    come back as one (charts over fine rows)."""
    x = "((c - :start) / :step)"
    if dialect == "postgresql":
        j = f"CAST(ceil({x}) AS INTEGER)"
    else:  # SQLite: CAST truncates toward zero, which is ceil() for negatives only
        j = f"(CAST({x} AS INTEGER) + CASE WHEN {x} > CAST({x} AS INTEGER) THEN 1 ELSE 0 END)"
    return (
        "SELECT labels, j, SUM(d), MIN(COALESCE(pc, c)), MAX(c)"
        f" FROM (SELECT labels, c, pc, d, {j} AS j FROM ({deltas_sql(src, match_sql)}) AS x)"
        " AS y GROUP BY labels, j ORDER BY labels, j"
    )


def names_sql(table: str) -> str:
    """Distinct metric names via the (name, ...) index: one index probe per name."""
    return (
        f"WITH RECURSIVE n(name) AS (SELECT MIN(name) FROM {table} UNION ALL"
        f" SELECT (SELECT MIN(t.name) FROM {table} t WHERE t.name > n.name)"
        " FROM n WHERE n.name IS NOT NULL) SELECT name FROM n WHERE name IS NOT NULL"
    )


def bucket_expr(col: str, width: float, dialect: str) -> str:
    """Start of the ``width``-second bucket holding ``col`` (epoch seconds >= 0)."""
    w = repr(float(width))
    if dialect == "postgresql":
        return f"floor({col} / {w}) * {w}"
    return f"CAST({col} / {w} AS INTEGER) * {w}"  # SQLite: no floor() in every build


_UPSERT = (
    ' ON CONFLICT (name, labels, bucket) DO UPDATE SET "last" = excluded."last",'
    ' "min" = excluded."min", "max" = excluded."max", "sum" = excluded."sum",'
    ' "count" = excluded."count", inc = excluded.inc'
)
_COLS = '(bucket, name, labels, "last", "min", "max", "sum", "count", inc)'

#: a sample's increase against the sample before it in its series (``pv``): nothing for a
#: series' first sample, the value itself after a decrease (a reset: a new process)
_SAMPLE_DELTA = "CASE WHEN pv IS NULL THEN 0.0 WHEN value >= pv THEN value - pv ELSE value END"


def _previous_last(name: str, before: str) -> str:
    """The newest 1-minute bucket's ``last`` of series (``name``, ``k.labels``) among the
    buckets starting before ``before``: the value of the sample before those read (an
    index seek on the rollup's unique (name, labels, bucket) index, however long ago)."""
    return (
        f'(SELECT m."last" FROM metric_rollup_1m m WHERE m.name = {name}'
        f" AND m.labels = k.labels AND m.bucket < {before} ORDER BY m.bucket DESC LIMIT 1)"
    )


def rollup_1m_sql(dialect: str) -> str:
    """Fold raw samples with ts in [:lo, :hi) into 1-minute buckets (upsert). ``inc`` is
    the sum of the bucket's sample deltas (:data:`_SAMPLE_DELTA`); a series' first sample
    in the range counts against the last value folded before ``:lo``. One window (per
    series, in time order) gives each sample its predecessor and marks the last of its
    bucket."""
    b = bucket_expr("ts", 60.0, dialect)
    w = "OVER (PARTITION BY name, labels ORDER BY ts, id)"
    rows = "FROM metric_samples WHERE name IN :names AND ts >= :lo AND ts < :hi"
    return (
        f"INSERT INTO metric_rollup_1m {_COLS}"
        " SELECT b, name, labels, MAX(CASE WHEN nb IS NULL OR nb <> b THEN value END),"
        f" MIN(value), MAX(value), SUM(value), COUNT(*), SUM({_SAMPLE_DELTA})"
        f" FROM (SELECT name, labels, value, base, b, LAG(value) {w} AS pv, LEAD(b) {w} AS nb"
        f" FROM (SELECT name, labels, value, ts, id, {b} AS b, 0 AS base {rows}"
        f" UNION ALL SELECT k.name, k.labels, {_previous_last('k.name', ':lo')}, -1.0, 0,"
        f" -1.0, 1 FROM (SELECT DISTINCT name, labels {rows}) AS k) AS r) AS p"
        # "WHERE": SQLite's parser needs one between a SELECT and ON CONFLICT
        " WHERE base = 0 GROUP BY b, name, labels" + _UPSERT
    )


def rollup_1h_sql(dialect: str) -> str:
    """Fold 1-minute buckets in [:lo, :hi) into 1-hour buckets (upsert); ``inc`` is the
    sum of the minutes' (NULL if one of them has none)."""
    b = bucket_expr("bucket", 3600.0, dialect)
    return (
        f"INSERT INTO metric_rollup_1h {_COLS}"
        ' SELECT hb, name, labels, MAX(CASE WHEN rn = 1 THEN "last" END), MIN("min"),'
        ' MAX("max"), SUM("sum"), SUM("count"),'
        " CASE WHEN COUNT(inc) = COUNT(*) THEN SUM(inc) END"
        f' FROM (SELECT name, labels, "last", "min", "max", "sum", "count", inc, {b} AS hb,'
        f" ROW_NUMBER() OVER (PARTITION BY name, labels, {b} ORDER BY bucket DESC) AS rn"
        " FROM metric_rollup_1m WHERE name IN :names AND bucket >= :lo AND bucket < :hi)"
        " AS s WHERE true GROUP BY hb, name, labels" + _UPSERT
    )


# -- counter increases stitched from pieces (see collectors.store_math.plan) -------------------
def raw_piece_sql(match_sql: str, *, lo_open: bool, hi_closed: bool) -> str:
    """Per series: the summed deltas of the raw samples with ts in the piece (``:lo``
    .. ``:hi``, ends open or closed as given). Each counts against the sample before it:
    raw samples are read from ``:flo`` (at or before ``:lo``), and before those a
    series' value is the ``last`` of its newest 1-minute bucket starting before ``:mlo``
    (at or before ``:flo``), which the fold read the same way."""
    lo = ">" if lo_open else ">="
    hi = "<=" if hi_closed else "<"
    w = "OVER (PARTITION BY labels ORDER BY ts, id)"
    rows = f"FROM metric_samples WHERE name = :name AND ts >= :flo AND ts <= :hi{match_sql}"
    return (
        f"SELECT labels, SUM({_SAMPLE_DELTA}) AS inc"
        f" FROM (SELECT labels, ts, value, base, LAG(value) {w} AS pv"
        f" FROM (SELECT labels, ts, value, id, 0 AS base {rows}"
        f" UNION ALL SELECT k.labels, -1.0, {_previous_last(':name', ':mlo')}, 0, 1"
        f" FROM (SELECT DISTINCT labels {rows}) AS k) AS r) AS p"
        f" WHERE base = 0 AND ts {lo} :lo AND ts {hi} :hi GROUP BY labels"
    )


def rollup_piece_sql(src: Source, match_sql: str) -> str:
    """Per series: the summed ``inc`` of the buckets starting in [:lo, :hi). A bucket
    folded before ``inc`` existed counts the old way, from its ``last`` against the
    bucket before (read from one bucket before ``:lo``) with the min/max reset rule, or
    from its own min when there is none (exact for a counter that did not reset in it)."""
    w = float(src.width)
    legacy = (  # a series' first bucket: its rise from the lowest value it held
        "CASE WHEN prev IS NULL THEN v - mn WHEN v >= prev AND mn >= prev THEN v - prev"
        " ELSE v + CASE WHEN mx > prev AND mx > v THEN mx - prev ELSE 0.0 END END"
    )
    return (
        f"SELECT labels, SUM(CASE WHEN inc IS NOT NULL THEN inc ELSE {legacy} END) AS inc"
        f' FROM (SELECT labels, bucket, inc, "last" AS v, "min" AS mn, "max" AS mx,'
        f' LAG("last") OVER (PARTITION BY labels ORDER BY bucket) AS prev FROM {src.table}'
        f" WHERE name = :name AND bucket >= :lo - {w!r} AND bucket < :hi{match_sql}) AS p"
        " WHERE bucket >= :lo GROUP BY labels"
    )


def newest_bucket_sql(table: str) -> str:
    """The start of the newest bucket of one metric (an index probe)."""
    return f"SELECT MAX(bucket) FROM {table} WHERE name = :name"
