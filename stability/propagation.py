"""Switch propagation: every process applies a change within a second.

:class:`SwitchWatcher` runs one daemon thread per process. It polls the version
counter (a one-row primary-key read) every ``poll_s``; with Redis configured it also
subscribes to a pub/sub channel that :func:`redis_publisher` notifies on every
commit, so changes usually apply in milliseconds and polling is only the safety net.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .errors import StabilityError
from .switches import SwitchService, SwitchSnapshot

log = logging.getLogger(__name__)
CHANNEL = "paywatch:switches"


def redis_publisher(client: Any, channel: str = CHANNEL) -> Callable[[int], None]:
    """An ``on_commit`` hook for :class:`SwitchService` that announces new versions."""

    def publish(version: int) -> None:
        client.publish(channel, str(version))

    return publish


class SwitchWatcher:
    """Calls ``apply(snapshot)`` whenever the switch version changes (and once at start)."""

    def __init__(
        self,
        service: SwitchService,
        apply: Callable[[SwitchSnapshot], None],
        *,
        poll_s: float = 0.25,
        redis_client: Any = None,
        channel: str = CHANNEL,
        expire: bool = True,
    ) -> None:
        self.service, self.apply = service, apply
        self.poll_s = poll_s
        self.redis, self.channel = redis_client, channel
        self.expire = expire
        self.version = -1
        self._next_expiry: datetime | None = None  # of the snapshot at self.version
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def refresh(self) -> bool:
        """Check the version now; apply a new snapshot if it moved. True if applied."""
        if self.expire and self._expiry_due():
            try:
                self.service.expire_due()  # expired switches revert themselves
            except StabilityError:
                log.warning("switch expiry check failed; will retry")
        try:
            version = self.service.version()
            if version == self.version:
                return False
            snapshot = self.service.snapshot()
        except StabilityError:
            log.warning("switch store unreachable; keeping version %s", self.version)
            return False
        self.apply(snapshot)
        self.version = snapshot.version
        self._next_expiry = snapshot.next_expiry
        return True

    def _expiry_due(self) -> bool:
        """Whether a switch may have passed its expiry. Any new switch bumps the version,
        and its snapshot brings its expiry: between changes, the last snapshot's earliest
        expiry is the first moment one can expire (no transaction every poll until then)."""
        if self.version < 0:  # no snapshot yet
            return True
        return self._next_expiry is not None and self.service.clock() >= self._next_expiry

    def start(self) -> SwitchWatcher:
        self.refresh()
        loop = threading.Thread(target=self._loop, name="paywatch-switches", daemon=True)
        self._threads.append(loop)
        if self.redis is not None:
            sub = threading.Thread(target=self._listen, name="paywatch-switches-sub", daemon=True)
            self._threads.append(sub)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a watcher must never die
                log.exception("switch refresh failed")

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None:
                        self._wake.set()
                pubsub.close()
            except Exception:  # noqa: BLE001 - Redis down: polling carries on
                log.warning("switch pub/sub unavailable; polling only")
                self._stop.wait(2.0)
