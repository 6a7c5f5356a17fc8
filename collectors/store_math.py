"""Folding per-series query results into groups, chart lines and quantiles (the pure
part of :mod:`collectors.store`, no database)."""

from __future__ import annotations

import re
from collections.abc import Mapping

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
