"""Circuit breakers: error and slow-call ratios over a count-based sliding window.

closed ─(ratio over the last ``window_size`` calls, once ``min_calls``)─► open
open ─(``open_s`` cool-down)─► half_open ─(``half_open_probes`` good probes)─► closed
half_open ─(any failed or slow probe)─► open; ``force()`` pins forced_open/forced_closed.

With a :class:`BreakerStateStore` the breakers of one name in every process act as
one: opening, closing and forcing are published, and ``allow()`` adopts what
another process published (read at most every ``sync_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stability.breaker_store import STATES, BreakerSnapshot, BreakerStateStore
from stability.errors import StabilityError

__all__ = ["STATES", "BreakerConfig", "BreakerSnapshot", "CircuitBreaker", "OnChange"]

CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, FORCED_CLOSED = STATES
log = logging.getLogger(__name__)
#: on_change(name, from_state, to_state, reason)
OnChange = Callable[[str, str, str, str], None]
#: after a failed store read, wait at least this long before the next one
STORE_RETRY_S = 1.0
_FORCED = (FORCED_OPEN, FORCED_CLOSED)
_GOOD = (False, False)  # a window entry: (failed, slow)
# (from_state, to_state, reason, snapshot to publish, generation of that snapshot)
_Effect = tuple[str, str, str, BreakerSnapshot | None, int]


@dataclass(frozen=True)
class BreakerConfig:
    """When a breaker opens and how it recovers (see the module docstring)."""

    window_size: int = 20
    min_calls: int = 10
    failure_ratio: float = 0.5
    slow_call_s: float = 1.0
    slow_ratio: float = 0.5
    open_s: float = 5.0
    half_open_probes: int = 3

    def __post_init__(self) -> None:
        if self.window_size < 1:
            raise ValueError("window_size must be >= 1")
        if not 1 <= self.min_calls <= self.window_size:
            raise ValueError("min_calls must be between 1 and window_size")
        if not 0 < self.failure_ratio <= 1 or not 0 < self.slow_ratio <= 1:
            raise ValueError("failure_ratio and slow_ratio must be in (0, 1]")
        if not self.slow_call_s > 0 or self.open_s < 0:
            raise ValueError("slow_call_s must be > 0 and open_s >= 0")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be >= 1")


class CircuitBreaker:
    """A thread-safe circuit breaker; ``on_change`` hears every transition."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        store: BreakerStateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
        sync_s: float = 0.5,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self.sync_s = sync_s
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()  # store writes, in generation order
        self._state = CLOSED
        #: closed (or forced closed) with no shared store: ``allow()`` is surely True
        #: (kept up to date by every transition; the guard's hot path reads it)
        self.plainly_closed = store is None
        self._opened_at: float | None = None
        self._window: deque[tuple[bool, bool]] = deque(maxlen=self.config.window_size)
        self._failures = self._slow = 0
        self._admitted = self._done = self._ok = 0  # half-open probes
        self._last_probe_at = 0.0
        self._gen = 0  # bumped on every publication
        self._seen: tuple[str, float | None] | None = None  # last store state read/written
        self._next_sync = float("-inf")
        self._syncing = False

    @property
    def state(self) -> str:
        """The current state (an elapsed cool-down turns open into half_open)."""
        fx: list[_Effect] = []
        with self._lock:
            self._tick(self._clock(), fx)
            state = self._state
        self._apply(fx)
        return state

    def snapshot(self) -> BreakerSnapshot:
        """State, ``opened_at`` and the counters of the current window."""
        fx: list[_Effect] = []
        with self._lock:
            self._tick(self._clock(), fx)
            snap = BreakerSnapshot(
                self._state, self._opened_at, len(self._window), self._failures, self._slow
            )
        self._apply(fx)
        return snap

    def allow(self) -> bool:
        """May a call go through now? In half_open each ``True`` is a probe to record."""
        if self.plainly_closed:
            return True  # hot path: nothing to tick or sync while closed and unshared
        fx: list[_Effect] = []
        self._sync(fx)
        with self._lock:
            now = self._clock()
            self._tick(now, fx)
            if self._state in (CLOSED, FORCED_CLOSED):
                allowed = True
            elif self._state == HALF_OPEN and self._admitted < self.config.half_open_probes:
                self._admitted += 1
                self._last_probe_at = now
                allowed = True
            else:
                allowed = False
        self._apply(fx)
        return allowed

    def sync(self) -> str:
        """Adopt the state another process published in the shared store (read when due,
        at most every ``sync_s``, as :meth:`allow` does) and return the current state;
        unlike :meth:`allow` it admits no call and takes no half-open probe. Without a
        store: the local state."""
        fx: list[_Effect] = []
        self._sync(fx)
        with self._lock:
            self._tick(self._clock(), fx)
            state = self._state
        self._apply(fx)
        return state

    def record(self, success: bool, duration_s: float) -> None:
        """Record the outcome of a call that :meth:`allow` admitted."""
        cfg = self.config
        slow = duration_s >= cfg.slow_call_s
        if (
            success
            and not slow
            and self._state == CLOSED
            and self._store is None
            and not self._failures
            and not self._slow
            and cfg.window_size >= 8
        ):
            # hot path: a good call into a clean window changes no count and no state, so
            # it needs no lock (deque.append is atomic). A failure recorded at the same
            # moment is at the window's far end, never the entry this append evicts; if
            # one slipped in meanwhile, recount under the lock so the counts stay exact.
            self._window.append(_GOOD)
            if self._failures or self._slow:
                with self._lock:
                    entries = list(self._window)
                    self._failures = sum(f for f, _ in entries)
                    self._slow = sum(s for _, s in entries)
            return
        fx: list[_Effect] = []
        with self._lock:
            now = self._clock()
            if self._state == CLOSED:
                if len(self._window) == cfg.window_size:
                    old_failed, old_slow = self._window[0]
                    self._failures -= old_failed
                    self._slow -= old_slow
                self._window.append((not success, slow))
                self._failures += not success
                self._slow += slow
                calls = len(self._window)
                if calls >= cfg.min_calls:
                    fail, slw = self._failures / calls, self._slow / calls
                    if fail >= cfg.failure_ratio:
                        why = f"failure ratio {fail:.2f} >= {cfg.failure_ratio} over {calls} calls"
                        self._move(OPEN, why, now, fx)
                    elif slw >= cfg.slow_ratio:
                        why = f"slow-call ratio {slw:.2f} >= {cfg.slow_ratio} over {calls} calls"
                        self._move(OPEN, why, now, fx)
            elif self._state == HALF_OPEN and self._done < self._admitted:
                self._done += 1
                if not success or slow:
                    what = "failed" if not success else f"was slow ({duration_s:.3f}s)"
                    self._move(OPEN, f"half-open probe {what}", now, fx)
                else:
                    self._ok += 1
                    if self._ok >= cfg.half_open_probes:
                        self._move(CLOSED, f"{self._ok} half-open probes succeeded", now, fx)
            # open/forced: results of calls admitted before the change are ignored
        self._apply(fx)

    def force(self, state: str | None, reason: str) -> None:
        """Pin the breaker to ``forced_open``/``forced_closed``; ``None`` releases to closed."""
        if state is not None and state not in _FORCED:
            raise ValueError(f"force() takes {_FORCED} or None, not {state!r}")
        if not reason or not reason.strip():
            raise ValueError("forcing a breaker needs a reason")
        fx: list[_Effect] = []
        with self._lock:
            now = self._clock()
            if state is not None:
                self._move(state, f"forced: {reason}", now, fx)
            elif self._state in _FORCED:
                self._move(CLOSED, f"released: {reason}", now, fx)
        self._apply(fx)

    # -- internals (called with self._lock held, except _sync and _apply) --

    def _move(
        self, to: str, reason: str, now: float, fx: list[_Effect], publish: bool = True
    ) -> None:
        frm = self._state
        if frm == to:
            return
        self._state = to
        self.plainly_closed = self._store is None and to in (CLOSED, FORCED_CLOSED)
        self._opened_at = now if to in (OPEN, FORCED_OPEN) else None
        if to == CLOSED:  # a fresh window
            self._window.clear()
            self._failures = self._slow = 0
        if to == HALF_OPEN:
            self._admitted = self._done = self._ok = 0
        snap = None
        if publish and self._store is not None and to != HALF_OPEN:
            self._gen += 1
            snap = BreakerSnapshot(to, self._opened_at)
            self._seen = snap.shared
        fx.append((frm, to, reason, snap, self._gen))

    def _tick(self, now: float, fx: list[_Effect]) -> None:
        cfg = self.config
        if self._state == OPEN and now - (self._opened_at or 0.0) >= cfg.open_s:
            self._move(HALF_OPEN, f"cool-down of {cfg.open_s}s elapsed", now, fx)
        elif (
            self._state == HALF_OPEN
            and self._admitted >= cfg.half_open_probes > self._done
            and now - self._last_probe_at >= max(cfg.open_s, cfg.slow_call_s)
        ):
            self._move(OPEN, "half-open probes never finished", now, fx)

    def _adopt(self, snap: BreakerSnapshot, now: float, fx: list[_Effect]) -> None:
        """Follow a state another process published."""
        target, local = snap.state, self._state
        if target in (local, HALF_OPEN):
            return
        if local in _FORCED and target == OPEN:
            return  # a manual force outranks another process's automatic opening
        verb = {OPEN: "opened", CLOSED: "closed"}.get(target, target.replace("_", " "))
        self._move(target, f"{verb} by another process", now, fx, publish=False)

    def _sync(self, fx: list[_Effect]) -> None:
        """Read the shared store if due; I/O happens outside the state lock."""
        if self._store is None:
            return
        with self._lock:
            now = self._clock()
            if self._syncing or now < self._next_sync:
                return
            self._syncing = True
            self._next_sync = now + self.sync_s
            gen = self._gen
        snap: BreakerSnapshot | None = None
        failed = False
        try:
            snap = self._store.get(self.name)
        except StabilityError:
            failed = True
        with self._lock:
            self._syncing = False
            now = self._clock()
            if failed:  # go on with local state; do not pay a timeout on every call
                self._next_sync = now + max(self.sync_s, STORE_RETRY_S)
            elif snap is not None and gen == self._gen and snap.shared != self._seen:
                # gen unchanged: no local publication raced with this read
                self._seen = snap.shared
                self._adopt(snap, now, fx)

    def _apply(self, fx: list[_Effect]) -> None:
        """Publish and notify, outside the state lock."""
        for frm, to, reason, snap, gen in fx:
            if snap is not None and self._store is not None:
                with self._io_lock:
                    if gen == self._gen:  # skip a publication a newer one superseded
                        try:
                            self._store.set(self.name, snap)
                        except StabilityError as exc:
                            log.warning("breaker %s: state not published: %s", self.name, exc)
            if self._on_change is not None:
                try:
                    self._on_change(self.name, frm, to, reason)
                except Exception:  # a listener must never break the protected call
                    log.exception("breaker %s: on_change listener failed", self.name)
