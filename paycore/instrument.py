"""The pay core's view of metrics: ``timed(step)`` and ``observe(...)``.

:class:`collectors.metrics.CoreMetrics` satisfies it; :data:`NULL_METRICS` is the
default when no registry is wired in (libraries and tests that do not measure).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol


class Metrics(Protocol):
    def timed(self, step: str, pay_org: str = "") -> Any: ...

    def observe(
        self, step: str, outcome: str, reason: str = "", pay_org: str = "", *, seconds: float
    ) -> None: ...


class _NullTimed:
    __slots__ = ("outcome", "pay_org", "reason")

    def __init__(self) -> None:
        self.outcome = "ok"
        self.reason = ""
        self.pay_org = ""

    def __enter__(self) -> _NullTimed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class _NullMetrics:
    def timed(self, step: str, pay_org: str = "") -> _NullTimed:
        return _NullTimed()

    def observe(
        self, step: str, outcome: str, reason: str = "", pay_org: str = "", *, seconds: float
    ) -> None:
        return None


NULL_METRICS: Metrics = _NullMetrics()
