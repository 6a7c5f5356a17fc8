"""Cluster-wide token buckets in Redis: one EVALSHA round trip per decision."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stability.errors import LimitBackendUnavailable
from stability.limits import Decision, LimitStore, check_acquire_args

#: socket (and connect) timeout of clients built from a URL: a limit check must
#: never hold a payment for long when Redis is slow or gone
SOCKET_TIMEOUT_S = 0.25

#: KEYS[1] = bucket hash; ARGV = rate (tokens/s), burst (capacity), cost.
#: Returns {allowed (0/1), remaining tokens, retry_after seconds} (numbers as
#: strings: Redis would truncate Lua floats to integers). Time comes from the
#: server (TIME) so clients with skewed clocks share one refill schedule.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local need = cost
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
  need = 1
end
local retry_after = (need - tokens) / rate
if retry_after < 0 then retry_after = 0 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
local ttl = math.ceil(2000 * burst / rate)
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry_after)}
"""


def client_from_url(url: str) -> redis.Redis:
    """A client with short timeouts and a single immediate retry (stale connection)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )


class RedisLimitStore(LimitStore):
    """Token buckets shared by every process that points at the same Redis.

    ``client_or_url`` is a ``redis.Redis`` (not closed by :meth:`close`) or a URL
    (a client with a 0.25 s socket timeout is built and owned here).
    """

    def __init__(
        self, client_or_url: redis.Redis | str, *, namespace: str = "paywatch:limit:"
    ) -> None:
        if isinstance(client_or_url, str):
            self._client = client_from_url(client_or_url)
            self._owned = True
        else:
            self._client = client_or_url
            self._owned = False
        self.namespace = namespace
        self._script: Any = self._client.register_script(TOKEN_BUCKET_LUA)

    def acquire(self, key: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        check_acquire_args(rate, burst, cost)
        try:
            allowed, remaining, retry_after = self._script(
                keys=[self.namespace + key], args=[repr(rate), repr(burst), repr(cost)]
            )
        except redis.exceptions.RedisError as exc:
            # No URL in the message: it may carry a password.
            raise LimitBackendUnavailable(
                f"limit store unreachable: {type(exc).__name__}", resource="redis"
            ) from None
        return Decision(bool(int(allowed)), float(remaining), float(retry_after))

    def reset(self, key: str) -> None:
        try:
            self._client.delete(self.namespace + key)
        except redis.exceptions.RedisError as exc:
            raise LimitBackendUnavailable(
                f"limit store unreachable: {type(exc).__name__}", resource="redis"
            ) from None

    def close(self) -> None:
        if self._owned:
            self._client.close()
