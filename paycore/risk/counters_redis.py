"""Risk counters in Redis, shared by every API replica: one script run (one round trip)
per reservation or release.

Each (scope, window) is a hash ``{namespace}{<scope>}:<window>`` with fields ``c``
(attempts) and ``a`` (amount). The scope sits in a hash tag, so every window of one
scope lives in one Redis Cluster slot and one script can check and change them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backends.errors import DriverErrors
from backends.redis import client_for

from ..errors import RiskUnavailable
from .counters import Refusal, RiskCounters
from .policy import Window

#: socket (and connect) timeout of clients built from a URL: below the risk edge's
#: 300 ms budget, so a slow Redis ends in the fallback, not in a held payment
SOCKET_TIMEOUT_S = 0.25

#: KEYS: one hash per window. ARGV[1] = amount; then per window: max_count, max_amount
#: (0: none), ttl seconds. Returns 0 (reserved in every window) or {i, 1 | 2}: window i
#: had no room for one more attempt (1) or for the amount (2); nothing was changed.
RESERVE_LUA = """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local got = redis.call('HMGET', key, 'c', 'a')
  local c = tonumber(got[1]) or 0
  local a = tonumber(got[2]) or 0
  if c + 1 > tonumber(ARGV[base]) then return {i, 1} end
  local max_amount = tonumber(ARGV[base + 1])
  if max_amount > 0 and a + amount > max_amount then return {i, 2} end
end
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'c', 1)
  redis.call('HINCRBY', key, 'a', ARGV[1])
  redis.call('EXPIRE', key, ARGV[2 + (i - 1) * 3 + 2])
end
return 0
"""

#: KEYS: the windows of one reservation; ARGV[1] = its amount. Floors at zero; a window
#: that has expired meanwhile is left alone.
RELEASE_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    if redis.call('HINCRBY', key, 'c', -1) < 0 then redis.call('HSET', key, 'c', 0) end
    if redis.call('HINCRBY', key, 'a', -tonumber(ARGV[1])) < 0 then
      redis.call('HSET', key, 'a', 0)
    end
  end
end
return 0
"""


#: driver errors become RiskUnavailable, once; no URL in the message (it may carry a
#: password) and no driver error in the traceback
_UNAVAILABLE = DriverErrors(
    lambda exc: RiskUnavailable(f"risk counters unreachable: {type(exc).__name__}"), chain=False
)


class RedisRiskCounters(RiskCounters):
    """Counters shared by every process that points at the same Redis.

    ``client_or_url``: a ``redis.Redis`` (not closed by :meth:`close`) or a URL (a client
    with a 0.25 s socket timeout and no retry loop is built and owned here).
    ``namespace`` prefixes every key (tests make it unique per test).
    """

    def __init__(self, client_or_url: Any, *, namespace: str = "paywatch:risk:") -> None:
        self._client, self._owns = client_for(client_or_url, timeout=SOCKET_TIMEOUT_S, retries=0)
        self.namespace = namespace
        # register_script only builds a Script object: no round trip here
        self._reserve = self._client.register_script(RESERVE_LUA)
        self._release = self._client.register_script(RELEASE_LUA)

    def _keys(self, scope: str, windows: Sequence[Window]) -> list[str]:
        return [f"{self.namespace}{{{scope}}}:{w.suffix}" for w in windows]

    def reserve(self, scope: str, amount: int, windows: Sequence[Window]) -> Refusal | None:
        args: list[int] = [amount]
        for w in windows:
            args += [w.max_count, w.max_amount, max(1, w.ttl_s)]
        with _UNAVAILABLE:
            reply = self._reserve(keys=self._keys(scope, windows), args=args)
        if not reply:
            return None
        index, which = (int(x) for x in reply)
        return Refusal(windows[index - 1], "count" if which == 1 else "amount")

    def release(self, scope: str, amount: int, windows: Sequence[Window]) -> None:
        with _UNAVAILABLE:
            self._release(keys=self._keys(scope, windows), args=[amount])

    def usage(self, scope: str, window: Window) -> tuple[int, int]:
        with _UNAVAILABLE:
            c, a = self._client.hmget(self._keys(scope, [window])[0], "c", "a")
        return int(c or 0), int(a or 0)

    def close(self) -> None:
        if self._owns:
            self._client.close()
