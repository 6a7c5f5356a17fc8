"""The sampler: a registry's samples into the time-series store at a fixed interval.

It reads ``registry.collect()`` the way a Prometheus scrape does, so the database
holds the same series Prometheus would (counters as ``_total``, histograms as
``_bucket``/``_count``/``_sum``, gauges as they are; ``_created`` is left out). Its
thread also folds rollups every minute and prunes past retention every hour.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from .errors import CollectorsError
from .store import H1_RETENTION, M1_RETENTION, RAW_RETENTION, TimeSeriesStore

__all__ = ["Sampler"]

log = logging.getLogger(__name__)
_CUMULATIVE = frozenset({"counter", "histogram", "summary"})


class Sampler:
    """Samples ``registry`` into ``store`` every ``interval`` seconds.

    ``include``: metric-family name prefixes to keep. ``instance``: added as the
    ``instance`` label to every series; give each process that samples into the same
    database its own stable value (e.g. ``api-1``), or their counters mix.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        store: TimeSeriesStore,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        include: str | tuple[str, ...] = "paywatch_",
        instance: str | None = None,
        rollup_every: float = 60.0,
        prune_every: float = 3600.0,
        retention: tuple[float, float, float] = (RAW_RETENTION, M1_RETENTION, H1_RETENTION),
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.registry = registry
        self.store = store
        self.interval = interval
        self.clock = clock
        self.include = (include,) if isinstance(include, str) else tuple(include)
        self.instance = instance
        self.rollup_every = rollup_every
        self.prune_every = prune_every
        self.retention = retention
        self.errors = 0  # failed iterations of the background loop
        self._last_rollup = -math.inf
        self._last_prune = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._skipped: set[str] = set()
        self._known: set[tuple[str, str]] = set()  # counter series seen (name, labels)
        self._last_ts: float | None = None

    def collect(self) -> list[tuple[str, dict[str, str], float]]:
        """The registry's current samples ``(name, labels, value)`` that are kept."""
        return [(name, labels, value) for name, labels, value, _ in self._collect()]

    def _collect(self) -> list[tuple[str, dict[str, str], float, bool]]:
        out = []
        for family in self.registry.collect():
            if not family.name.startswith(self.include):
                continue
            cumulative = family.type in _CUMULATIVE
            for s in family.samples:
                if s.name.endswith("_created") or math.isnan(s.value):
                    continue
                labels = dict(s.labels)
                if self.instance is not None:
                    labels.setdefault("instance", self.instance)
                out.append((s.name, labels, float(s.value), cumulative))
        return out

    def sample_once(self, now: float | None = None) -> int:
        """Write one sample of every kept series at ``now``; returns rows written.

        A counter series that appears after the first sample (label children are
        created on first use, e.g. the first error of a kind) also gets a 0 at the
        previous sample's time: it did not exist then, so it was 0, and without that
        row its first increase would be lost (as it is in Prometheus).
        """
        ts = self.clock() if now is None else now
        rows = []
        for name, labels, value, cumulative in self._collect():
            text = self.store.labels_text(labels)
            if len(name) > 128 or len(text) > 512:
                if name not in self._skipped:  # warn once per name, never fail the loop
                    self._skipped.add(name)
                    log.warning("series of %s too long for the store; not sampled", name)
                continue
            if cumulative and (name, text) not in self._known:
                self._known.add((name, text))
                if self._last_ts is not None and self._last_ts < ts:
                    rows.append((self._last_ts, name, labels, 0.0))
            rows.append((ts, name, labels, value))
        n = self.store.write(rows)
        self._last_ts = ts
        return n

    def maintain(self, now: float | None = None) -> None:
        """Fold rollups when a minute has passed since the last time; prune hourly."""
        ts = self.clock() if now is None else now
        if ts - self._last_rollup >= self.rollup_every:
            self.store.rollup(ts)
            self._last_rollup = ts
        if ts - self._last_prune >= self.prune_every:
            raw, m1, h1 = self.retention
            self.store.prune(ts, raw, m1, h1)
            self._last_prune = ts

    # -- background thread -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Sample now and then every ``interval`` seconds in a daemon thread."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="paywatch-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (it finishes the iteration in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
                self.maintain()
            except CollectorsError:
                self.errors += 1
                log.exception("sampler iteration failed")
            except Exception:  # noqa: BLE001 - a collector's bug must not stop sampling
                self.errors += 1
                log.exception("sampler iteration failed unexpectedly")
            deadline += self.interval
            delay = deadline - time.monotonic()
            if delay < 0:  # fell behind (slow database): skip the missed ticks
                deadline, delay = time.monotonic(), 0.0
            self._stop.wait(delay)
