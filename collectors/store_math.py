"""Folding per-series query results into groups, chart lines and quantiles (the pure
part of :mod:`collectors.store`, no database)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import QueryError
from .histogram import bucket_quantile, parse_le
from .query import Series
from .store_eval import SeriesRows, group_key

Key = tuple[tuple[str, str], ...]
_PCT = re.compile(r"p(\d{2,4})")


def add_line(acc: list[float | None], line: list[float | None]) -> None:
    for i, v in enumerate(line):
        if v is not None:
            prev = acc[i]
            acc[i] = v if prev is None else prev + v


def latest_points(
    series: dict[str, tuple[dict[str, str], SeriesRows]],
    by: tuple[str, ...],
    ts: list[float],
    max_age: float,
) -> dict[Key, list[tuple[float, float | None]]]:
    sums: dict[tuple[str, ...], list[float | None]] = {}
    for labels, rows in series.values():
        add_line(sums.setdefault(group_key(labels, by), [None] * len(ts)), rows.latest(ts, max_age))
    return {series_key(by, k): list(zip(ts, vals, strict=True)) for k, vals in sorted(sums.items())}


def quantile_points(
    q: float, by: tuple[str, ...], sums: dict[tuple[str, ...], list[float | None]], ts: list[float]
) -> dict[Key, list[tuple[float, float | None]]]:
    groups: dict[tuple[str, ...], list[tuple[float, list[float | None]]]] = {}
    for key, vals in sums.items():
        groups.setdefault(key[:-1], []).append((parse_le(key[-1]), vals))
    out: dict[Key, list[tuple[float, float | None]]] = {}
    for gkey, buckets in sorted(groups.items()):
        line: list[tuple[float, float | None]] = []
        for i, t in enumerate(ts):
            present: list[tuple[float, float]] = []
            for le, vals in buckets:
                v = vals[i]
                if v is not None:
                    present.append((le, v))
            line.append((t, bucket_quantile(q, present) if present else None))
        out[series_key(by, gkey)] = line
    return out


def quantiles(q: float, inc: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float | None]:
    groups: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for key, value in inc.items():
        groups.setdefault(key[:-1], []).append((parse_le(key[-1]), value))
    return {k: bucket_quantile(q, b) for k, b in groups.items()}


def to_series(by: tuple[str, ...], values: Mapping[tuple[str, ...], float | None]) -> list[Series]:
    return [Series(dict(zip(by, k, strict=True)), v) for k, v in sorted(values.items())]


def series_key(by: tuple[str, ...], values: tuple[str, ...]) -> Key:
    return tuple(sorted(zip(by, values, strict=True)))


def div(num: float, den: float | None) -> float | None:
    return None if not den else num / den


def check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise QueryError(f"quantile must be in [0, 1], not {q}")


def range_kind(kind: str) -> float | None:
    """None for "rate"/"latest"; the quantile for "p50", "p99", "p999"..."""
    if kind in ("rate", "latest"):
        return None
    m = _PCT.fullmatch(kind)
    if m is None:
        raise QueryError(f"unknown range kind {kind!r}: rate, latest or pNN (p50, p99, p999)")
    return float("0." + m[1])


# -- stitching a window from the resolutions that hold it ---------------------------------------
@dataclass(frozen=True)
class Level:
    """One resolution as a window plan sees it: ``width`` 0 for raw samples; it holds
    every sample from ``reach`` on (retention) and, for a rollup, every sample before
    ``until`` completely folded (its newest buckets are still filling)."""

    name: str  # "raw", "1m", "1h"
    width: float
    reach: float
    until: float = math.inf


@dataclass(frozen=True)
class Piece:
    """Read samples with ts in ``lo`` .. ``hi`` from the level ``name`` (for a rollup:
    the buckets starting in [lo, hi))."""

    name: str
    lo: float
    hi: float
    lo_open: bool = False
    hi_closed: bool = False


def _floor(t: float, w: float) -> float:
    return math.floor(t / w) * w if math.isfinite(t) else t


def _ceil(t: float, w: float) -> float:
    return math.ceil(t / w) * w if math.isfinite(t) else t


def plan(lo: float, hi: float, levels: Sequence[Level]) -> list[Piece]:
    """The pieces that cover the window (lo, hi] with every sample in exactly one piece.

    ``levels`` go from coarse to fine and end with the raw samples (width 0). Whole
    buckets of the coarsest level that holds them cover the middle of the window (few
    rows); finer levels cover the edges: the newest samples (not yet folded) and the
    window's start, which the finest level still holding it gives to the sample. Where
    none does (older than the raw and minute retention), the start widens to the bucket
    holding it.
    """
    if not levels or levels[-1].width:
        raise ValueError("levels must end with the raw samples (width 0)")
    if hi < lo:
        return []
    return _cover(lo, hi, True, True, levels, strict=False) or []


def _cover(
    lo: float, hi: float, lo_open: bool, hi_closed: bool, levels: Sequence[Level], *, strict: bool
) -> list[Piece] | None:
    """Cover ``lo .. hi`` with ``levels``; None when ``strict`` and they cannot read from
    ``lo`` on (a coarser level then widens instead); otherwise what they hold of it."""
    if hi < lo or (hi == lo and (lo_open or not hi_closed)):
        return []
    lvl, finer = levels[0], levels[1:]
    w = lvl.width
    if not w:  # raw samples: exact, from what retention still holds
        if lo < lvl.reach:
            if strict:
                return None
            lo, lo_open = lvl.reach, False
        return [] if hi < lo else [Piece(lvl.name, lo, hi, lo_open, hi_closed)]
    b = min(_floor(hi, w), _floor(lvl.until, w))
    a = _ceil(lo, w)
    if lo_open and a == lo:  # the sample at lo itself is not in the window
        a += w
    head: list[Piece] | None
    if a < b:
        head = _cover(lo, a, lo_open, False, finer, strict=True)
    else:  # no whole bucket of this level inside: the finer levels do it all if they can
        head = _cover(lo, hi, lo_open, hi_closed, finer, strict=True)
        if head is not None:
            return head
        if _floor(lo, w) + w > b:  # nor does this level hold the bucket around lo
            return None if strict else _cover(lo, hi, lo_open, hi_closed, finer, strict=False)
    if head is None:  # the finer levels no longer hold the start: widen to its bucket
        if strict and _floor(lo, w) < lvl.reach:
            return None
        a, head = _floor(lo, w), []
    tail = _cover(b, hi, False, hi_closed, finer, strict=False) or []
    return [*head, Piece(lvl.name, a, b), *tail]
