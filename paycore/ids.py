"""Global unique, time-ordered 64-bit ids (Snowflake layout).

41 bits of milliseconds since 2024-01-01, 10 bits of node id, 12 bits of sequence:
ids sort by creation time, fit a signed BIGINT, and need no database round trip.
Each process must use a distinct node id (``PAYWATCH_NODE_ID``); the default mixes
the pid with randomness, which is good enough for a single machine.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1


def default_node_id() -> int:
    """Node id from ``PAYWATCH_NODE_ID``, else derived from the pid and randomness."""
    env = os.environ.get("PAYWATCH_NODE_ID")
    if env:
        node = int(env)
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"PAYWATCH_NODE_ID must be within 0..{MAX_NODE}")
        return node
    return (os.getpid() ^ random.getrandbits(NODE_BITS)) & MAX_NODE


class IdGenerator:
    """Thread-safe Snowflake id generator."""

    def __init__(self, node_id: int | None = None, clock_ms: Callable[[], int] | None = None):
        node = default_node_id() if node_id is None else node_id
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node id must be within 0..{MAX_NODE}")
        self.node_id = node
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._seq = 0

    def next_id(self) -> int:
        """Return a new id, strictly greater than every id this generator returned."""
        with self._lock:
            now = self._clock_ms()
            if now < self._last_ms:  # clock went backwards: keep monotonic
                now = self._last_ms
            if now == self._last_ms:
                self._seq = (self._seq + 1) & MAX_SEQ
                if self._seq == 0:  # sequence exhausted within this ms: borrow the next ms
                    now = self._last_ms + 1
            else:
                self._seq = 0
            self._last_ms = now
            return (
                ((now - EPOCH_MS) << (NODE_BITS + SEQ_BITS))
                | (self.node_id << SEQ_BITS)
                | self._seq
            )


def id_timestamp_ms(value: int) -> int:
    """The creation time (epoch milliseconds) encoded in an id."""
    return (value >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
