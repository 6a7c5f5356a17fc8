"""Counters of a simulator run (thread-safe), as the summary and drill reports show them."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

FIELDS = (
    "arrivals",  #: Poisson arrivals handled
    "shed",  #: arrivals dropped because the simulator's own queue was full
    "trades_created",
    "trades_refused",  #: create answered with an error
    "pays_sent",
    "pays_accepted",  #: answered processing or success
    "pays_refused",  #: answered with an error (see ``refusals``)
    "rerouted",  #: a refused channel pay sent again through another pay org
    "coupon_pays",  #: pays sent with a coupon issued for them
    "points_pays",  #: pays sent with part of the user's points
    "paid",
    "pay_failed",  #: the channel (or a tool) failed the pay order
    "closed",
    "confirms",
    "refunds_sent",
    "refunds_accepted",
    "refunds_succeeded",
    "refunds_failed",
    "refunds_refused",
    "notifications",  #: distinct merchant notifications accepted by the receivers
)


class SimStats:
    """Named counters plus error codes of refused calls (``refusals``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        if name not in FIELDS:
            raise KeyError(name)
        with self._lock:
            self._counts[name] += n

    def refused(self, code: str) -> None:
        with self._lock:
            self.refusals[code or "unknown"] += 1

    def __getattr__(self, name: str) -> int:
        if name in FIELDS:
            with self._lock:
                return self._counts[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> int:
        return int(self.__getattr__(name))

    def as_dict(self) -> dict[str, Any]:
        """Every counter and the refusal codes, JSON-ready."""
        with self._lock:
            out: dict[str, Any] = {f: self._counts[f] for f in FIELDS}
            out["refusals"] = dict(self.refusals)
        return out
