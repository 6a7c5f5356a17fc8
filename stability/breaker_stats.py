"""Breaker windows made visible to other processes (the console).

A breaker's counters live in the process that makes the calls. Every few seconds
:class:`BreakerStatsPublisher` writes each breaker of its guard that has seen calls (or
is not closed) to ``stability_breaker_stats``, one row per resource and process (node),
so the console can show calls, failure ratio and slow-call ratio over each breaker's
window. A row is rewritten when it changes, and at least every ``heartbeat_s`` so a
reader can tell a live process (fresh rows) from one that stopped (stale rows, pruned
after a day). :func:`read_stats` is the read side.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .breaker import CircuitBreaker
from .schema import BreakerStat

log = logging.getLogger(__name__)
#: rows not rewritten for this long belong to a process that stopped
PRUNE_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class BreakerWindow:
    """One breaker's window in one process, as published."""

    resource: str
    node: str
    state: str
    calls: int
    failures: int
    slow_calls: int
    window_size: int
    min_calls: int
    failure_threshold: float
    slow_threshold: float
    slow_call_s: float
    updated_at: datetime


def window_of(breaker: CircuitBreaker, node: str, now: datetime) -> BreakerWindow:
    """The breaker's current window (counters, thresholds) as a publishable row."""
    snap, cfg = breaker.snapshot(), breaker.config
    return BreakerWindow(
        breaker.name,
        node,
        snap.state,
        snap.calls,
        snap.failures,
        snap.slow_calls,
        cfg.window_size,
        cfg.min_calls,
        cfg.failure_ratio,
        cfg.slow_ratio,
        cfg.slow_call_s,
        now,
    )


class BreakerStatsPublisher:
    """Writes the windows of ``breakers()`` (name -> breaker) every ``interval_s``."""

    def __init__(
        self,
        engine: Engine,
        breakers: Callable[[], Mapping[str, CircuitBreaker]],
        *,
        interval_s: float = 5.0,
        heartbeat_s: float = 30.0,
        node: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.breakers = breakers
        self.interval_s, self.heartbeat_s = interval_s, heartbeat_s
        self.node = (node or f"{socket.gethostname()}:{os.getpid()}")[:64]
        self.clock = clock
        self._last: dict[str, tuple[Any, ...]] = {}
        self._last_write: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_once(self) -> int:
        """Write what changed (everything once a heartbeat is due); returns rows written."""
        now = self.clock()
        rows = [window_of(b, self.node, now) for b in list(self.breakers().values())]
        rows = [
            r for r in rows if r.calls or r.state not in ("closed", "forced_closed", "forced_open")
        ]
        due = self._last_write is None or now - self._last_write >= timedelta(
            seconds=self.heartbeat_s
        )
        changed = {r.resource: r for r in rows if due or self._last.get(r.resource) != _key(r)}
        gone = set(self._last) - {r.resource for r in rows}
        if not changed and not gone:
            return 0
        stat = BreakerStat
        with self.engine.begin() as conn:
            for name in set(changed) | gone:
                conn.execute(sa.delete(stat).where(stat.node == self.node, stat.resource == name))
            if changed:
                conn.execute(sa.insert(stat), [r.__dict__ for r in changed.values()])
            if due:
                conn.execute(sa.delete(stat).where(stat.updated_at < now - PRUNE_AFTER))
        self._last = {r.resource: _key(r) for r in rows}
        if due:
            self._last_write = now
        return len(changed)

    def start(self) -> BreakerStatsPublisher:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="paywatch-breaker-stats", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and remove this process's rows (it no longer has breakers)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(BreakerStat).where(BreakerStat.node == self.node))
        except sa_exc.SQLAlchemyError:
            log.warning("could not remove breaker stats of %s", self.node)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.publish_once()
            except sa_exc.SQLAlchemyError:
                log.warning("breaker stats not published; will retry")
            except Exception:  # noqa: BLE001 - the publisher must never die
                log.exception("breaker stats publish failed")


def _key(row: BreakerWindow) -> tuple[Any, ...]:
    return (row.state, row.calls, row.failures, row.slow_calls)


def read_stats(engine: Engine) -> list[BreakerWindow]:
    """Every published breaker window, by resource and node."""
    t = BreakerStat.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.resource, t.c.node)).mappings().all()
    return [BreakerWindow(**{**r, "updated_at": _aware(r["updated_at"])}) for r in rows]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
