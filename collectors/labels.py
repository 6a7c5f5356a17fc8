"""Bounded label values: short codes only, never ids, at most ``cap`` distinct values.

Prometheus keeps one time series per distinct label set, so a label fed from request
data (an order id, a merchant id) grows without bound and sinks the scraper. Every
free-form label of :class:`~collectors.metrics.CoreMetrics` goes through a
:class:`BoundedLabel`: values that look like ids, or that arrive after ``cap`` distinct
values have been seen, are replaced by ``"other"`` and counted, instead of failing the
request that is being measured.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

__all__ = ["OTHER", "BoundedLabel", "is_short_code"]

OTHER = "other"
_SHORT = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,47}")
_ID_LIKE = re.compile(r"\d{6}|[0-9a-fA-F]{16}")  # long digit runs, hex digests, uuids
log = logging.getLogger(__name__)


def is_short_code(value: object) -> bool:
    """A bounded-looking label value: a short identifier-like code, no id in it."""
    return (
        isinstance(value, str)
        and _SHORT.fullmatch(value) is not None
        and _ID_LIKE.search(value) is None
    )


class BoundedLabel:
    """Maps raw values of one label to bounded ones; thread-safe, cheap on the hot path.

    The empty string is always allowed (it means "not applicable", e.g. the pay org of
    a step that has none). ``on_overflow(label)`` is called for every value mapped to
    ``"other"``.
    """

    def __init__(
        self,
        label: str,
        cap: int,
        *,
        allowed: frozenset[str] | None = None,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self.label = label
        self.cap = cap
        self.allowed = allowed
        self._on_overflow = on_overflow
        self._seen: dict[str, str] = {"": ""}
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, value: str) -> str:
        hit = self._seen.get(value)
        if hit is not None:
            return hit
        return self._admit(value)

    def _admit(self, value: str) -> str:
        ok = value in self.allowed if self.allowed is not None else is_short_code(value)
        with self._lock:
            if value in self._seen:
                return self._seen[value]
            if ok and len(self._seen) <= self.cap:
                self._seen[value] = value
                return value
        # Rejected values are not remembered: remembering ids would be the leak itself.
        if not self._warned:
            self._warned = True
            log.warning("label %s: value outside its bounded set mapped to %r", self.label, OTHER)
        if self._on_overflow is not None:
            self._on_overflow(self.label)
        return OTHER

    def values(self) -> list[str]:
        """The values admitted so far (without the empty one)."""
        with self._lock:
            return sorted(v for v in self._seen if v)
