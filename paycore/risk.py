"""Risk check on the pay link: a weak dependency with a conservative fallback.

The check itself is a small in-process rule set (single-payment ceiling and a
per-user velocity window). It is called through the guard as resource ``risk``;
when it is degraded, limited or broken the fallback allows only payments at or
below ``fallback_max_amount`` — the seeds' "allow below the risk threshold,
review later" — and refuses larger ones.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RiskRejected


@dataclass(frozen=True)
class RiskPolicy:
    max_amount: int = 50_000_000  # minor units per payment
    max_per_user_per_minute: int = 600
    fallback_max_amount: int = 500_000


class RiskEngine:
    """Decides whether a payment may go ahead; thread-safe."""

    def __init__(self, policy: RiskPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.policy = policy or RiskPolicy()
        self.clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, user_id: str, amount: int) -> str:
        """``"allow"``, or raise :class:`RiskRejected`."""
        if amount > self.policy.max_amount:
            raise RiskRejected("amount above the single-payment ceiling")
        now = self.clock()
        with self._lock:
            window = self._recent.setdefault(user_id, deque())
            while window and now - window[0] > 60:
                window.popleft()
            if len(window) >= self.policy.max_per_user_per_minute:
                raise RiskRejected("too many payments by this user in the last minute")
            window.append(now)
        return "allow"

    def fallback(self, amount: int) -> str:
        """What to decide while the risk service is unavailable."""
        if amount > self.policy.fallback_max_amount:
            raise RiskRejected("risk check unavailable; amount above the fallback threshold")
        return "allow_unchecked"
