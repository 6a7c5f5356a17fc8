"""Chart evaluation: many points from one fetch.

A chart reads its whole span in one statement, in one of two shapes:

* rows in time order (one row per series per point or so, e.g. 30 days of hourly
  rollups at a 1-hour step): the database only walks the (name, time) index, and the
  counter increases are taken here, with the same reset rule as the SQL of
  :func:`collectors.store_sql.deltas_sql`;
* increases already summed per series and chart interval in SQL (many rows per point,
  e.g. 2 days of minute rollups at a 5-minute step).

Either way a point ``t`` sums what a single query at ``at = t`` would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

__all__ = [
    "SeriesIntervals",
    "SeriesRows",
    "counter_delta",
    "group_key",
    "parse_labels",
    "points",
    "series_intervals",
    "split_rows",
]


def counter_delta(prev: float | None, v: float, mn: float, mx: float) -> float:
    """Increase since the previous reading ``prev`` of a row (v, min, max): a decrease
    is a reset; a rollup's max above both says what was counted before the reset."""
    if prev is None:
        return 0.0
    if v >= prev and mn >= prev:
        return v - prev
    return v + (mx - prev if mx > prev and mx > v else 0.0)


@dataclass
class SeriesRows:
    """One series' rows in time order: times, previous rows' times and increases (or
    values, for gauges)."""

    cs: list[float] = field(default_factory=list)
    pcs: list[float | None] = field(default_factory=list)
    vs: list[float] = field(default_factory=list)

    def increases(
        self, ts: Sequence[float], win: float, base: float, *, per_second: bool
    ) -> list[float | None]:
        """For each point ``t`` (ascending): the increase of the rows in (t - win, t],
        divided by the seconds those rows span when ``per_second``; 0 when only a
        baseline row lies in (t - win - base, t - win]; None when no row is near.

        One sweep with three cursors: linear in rows + points.
        """
        cs, pcs, vs, n = self.cs, self.pcs, self.vs, len(self.cs)
        prefix = [0.0, *accumulate(vs)]
        out: list[float | None] = [None] * len(ts)
        hi = lo = lb = 0
        for i, t in enumerate(ts):
            while hi < n and cs[hi] <= t:
                hi += 1
            t_lo = t - win
            while lo < n and cs[lo] <= t_lo:
                lo += 1
            t_base = t_lo - base
            while lb < n and cs[lb] <= t_base:
                lb += 1
            if lb >= hi:
                continue
            if lo >= hi:
                out[i] = 0.0
                continue
            inc = prefix[hi] - prefix[lo]
            if per_second:
                first = pcs[lo]
                span = cs[hi - 1] - (cs[lo] if first is None else first)
                inc = inc / span if span > 0 else 0.0
            out[i] = inc
        return out

    def latest(self, ts: Sequence[float], max_age: float) -> list[float | None]:
        """For each point ``t`` (ascending): the newest value in (t - max_age, t]."""
        cs, vs, n = self.cs, self.vs, len(self.cs)
        out: list[float | None] = [None] * len(ts)
        hi = 0
        for i, t in enumerate(ts):
            while hi < n and cs[hi] <= t:
                hi += 1
            if hi and cs[hi - 1] > t - max_age:
                out[i] = vs[hi - 1]
        return out


def parse_labels(text: str, cache: dict[str, dict[str, str]]) -> dict[str, str]:
    labels = cache.get(text)
    if labels is None:
        labels = cache[text] = json.loads(text)
    return labels


def matches(labels: Mapping[str, str], match: Mapping[str, str] | None) -> bool:
    return not match or all(labels.get(k, "") == v for k, v in match.items())


def group_key(labels: Mapping[str, str], by: Sequence[str]) -> tuple[str, ...]:
    return tuple(labels.get(k, "") for k in by)


def split_rows(
    rows: Iterable[Sequence[Any]], match: Mapping[str, str] | None, *, deltas: bool
) -> dict[str, tuple[dict[str, str], SeriesRows]]:
    """Rows (labels, e, v, mn, mx) in time order -> per series: times, previous times
    and increases (``deltas``) or values."""
    cache: dict[str, dict[str, str]] = {}
    out: dict[str, tuple[dict[str, str], SeriesRows]] = {}
    state: dict[str, list[Any]] = {}  # labels -> [rows, last value, last time] or []
    for text, e, v, mn, mx in rows:
        st = state.get(text)
        if st is None:
            labels = parse_labels(text, cache)
            if matches(labels, match):
                series = SeriesRows()
                out[text] = (labels, series)
                st = state[text] = [series, None, None]
            else:
                st = state[text] = []
        if not st:
            continue
        series, prev, prev_e = st
        series.cs.append(e)
        series.pcs.append(prev_e)
        series.vs.append(counter_delta(prev, v, mn, mx) if deltas else v)
        st[1], st[2] = v, e
    return out


@dataclass
class SeriesIntervals:
    """One series' increases summed per chart interval ``j``: (increase, time of the
    row before the first row, time of the last row)."""

    by_j: dict[int, tuple[float, float, float]] = field(default_factory=dict)

    def increases(self, n: int, m: int, mb: int, *, per_second: bool) -> list[float | None]:
        """Per point i < n: the increase over intervals (i - m, i]; 0 when only the
        ``mb`` intervals before those hold rows; None when none does. Prefix sums and
        nearest-interval tables keep it linear in points + intervals."""
        lo_j = -(m + mb)
        size = n - lo_j
        incs, has = [0.0] * size, [0] * size
        t0s, t1s = [0.0] * size, [0.0] * size
        for j, (inc, t0, t1) in self.by_j.items():
            k = j - lo_j
            if 0 <= k < size:
                incs[k], has[k], t0s[k], t1s[k] = inc, 1, t0, t1
        p_inc = [0.0, *accumulate(incs)]
        p_has = [0, *accumulate(has)]
        nxt, prv = [size] * (size + 1), [-1] * size
        for k in range(size - 1, -1, -1):
            nxt[k] = k if has[k] else nxt[k + 1]
        for k in range(size):
            prv[k] = k if has[k] else (prv[k - 1] if k else -1)
        out: list[float | None] = [None] * n
        for i in range(n):
            k_hi = i - lo_j
            k_lo = k_hi - m + 1
            if p_has[k_hi + 1] == p_has[k_lo]:
                if p_has[k_lo] > p_has[max(k_lo - mb, 0)]:
                    out[i] = 0.0
                continue
            inc = p_inc[k_hi + 1] - p_inc[k_lo]
            if per_second:
                span = t1s[prv[k_hi]] - t0s[nxt[k_lo]]
                inc = inc / span if span > 0 else 0.0
            out[i] = inc
        return out


def series_intervals(
    rows: Iterable[Sequence[Any]], match: Mapping[str, str] | None
) -> dict[str, tuple[dict[str, str], SeriesIntervals]]:
    """Rows (labels, j, increase, t0, t1) -> per series."""
    cache: dict[str, dict[str, str]] = {}
    out: dict[str, tuple[dict[str, str], SeriesIntervals]] = {}
    skip: set[str] = set()
    for text, j, inc, t0, t1 in rows:
        entry = out.get(text)
        if entry is None:
            if text in skip:
                continue
            labels = parse_labels(text, cache)
            if not matches(labels, match):
                skip.add(text)
                continue
            entry = out[text] = (labels, SeriesIntervals())
        entry[1].by_j[int(j)] = (float(inc), float(t0), float(t1))
    return out


def points(start: float, end: float, step: float) -> list[float]:
    """start, start + step, ... up to ``end`` (as Prometheus' query_range)."""
    n = int((end - start) / step + 1e-9) + 1
    return [start + i * step for i in range(n)]
