"""``histogram_quantile`` as Prometheus computes it, for the database store.

Input: cumulative bucket counts (or their increases over a window) keyed by the
bucket's upper bound ``le``. The quantile is interpolated linearly inside the bucket
it falls in, so its error is at most that bucket's width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["bucket_quantile", "parse_le"]


def parse_le(value: str) -> float:
    """The float value of an ``le`` label (``"+Inf"`` included)."""
    return float(value)  # float() accepts "+Inf", "inf" and exponents


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of buckets ``(upper_bound, cumulative_count)``; None without data.

    Follows Prometheus' ``bucketQuantile``: buckets are sorted, counts forced monotonic
    (rates of different buckets are not read at exactly the same instant), a missing
    ``+Inf`` bucket or no observations gives no answer, a rank in the ``+Inf`` bucket
    answers the largest finite bound, and the first bucket's lower bound is 0.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for upper, count in buckets:
        merged[upper] = merged.get(upper, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [b for b, _ in ordered]
    counts: list[float] = []
    for _, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count <= 0:
        return end
    return start + (end - start) * (rank / count)
