"""Cluster-wide token buckets in Redis: one EVALSHA per decision, and decisions made at
the same moment by threads of one process share a round trip.

Combining: a thread that asks while another is already talking to Redis queues its
decision; the thread holding the connection sends everything queued as one pipeline
(no MULTI: every bucket is its own script run) and hands each caller its own answer.
Under load that turns N round trips (and N system calls, and N times redis-py's
per-command overhead) into one, without a background thread or any extra latency
for a lone caller. Each decision is still exactly one run of the script, in arrival
order per bucket.
"""

from __future__ import annotations

import _thread
import threading
import time
from typing import Any

import redis

from backends.errors import DriverErrors
from backends.redis import REDIS_SCHEMES, client_for
from backends.registry import LIMITS, register

from .errors import LimitBackendUnavailable
from .limits import Decision, LimitStore, check_acquire_args

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


#: a Redis error as the limit store's error; no URL in the message (it may carry a password)
_UNAVAILABLE = DriverErrors(
    lambda exc: LimitBackendUnavailable(
        f"limit store unreachable: {type(exc).__name__}", resource="redis"
    ),
    chain=False,
    catch=(redis.exceptions.RedisError,),
)


def _decision(reply: Any) -> Decision:
    allowed, remaining, retry_after = reply
    return Decision(bool(int(allowed)), float(remaining), float(retry_after))


#: how long a queued decision waits for the sender before giving up (the socket timeout
#: bounds each round trip; this only guards against a sender that never comes back)
_WAIT_S = 5.0


def _resp(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class _Ask:
    """One queued decision; it is woken when it is answered (``finished``) or when
    its thread is handed the connection to send the queue itself."""

    __slots__ = ("_gate", "args", "finished", "key", "reply", "woken")

    def __init__(self, key: bytes, args: list[bytes]) -> None:
        self.key, self.args = key, args
        self.reply: Any = None
        self.finished = self.woken = False
        # a bare lock, held until woken: far cheaper than an Event (whose wait builds a
        # Condition waiter) when thousands of decisions a second each wait once
        self._gate = _thread.allocate_lock()
        self._gate.acquire()

    def wait(self, timeout: float) -> bool:
        return self._gate.acquire(timeout=timeout)

    def wake(self) -> None:
        if not self.woken:
            self.woken = True
            self._gate.release()

    def finish(self, reply: Any) -> None:
        self.reply, self.finished = reply, True
        self.wake()

    def outcome(self) -> Decision:
        if isinstance(self.reply, redis.exceptions.RedisError):
            raise _UNAVAILABLE.convert(self.reply)
        if isinstance(self.reply, BaseException):
            raise self.reply
        return _decision(self.reply)


@register(LIMITS, *REDIS_SCHEMES)
class RedisLimitStore(LimitStore):
    """Token buckets shared by every process that points at the same Redis.

    ``client_or_url`` (or ``client=``) is a ``redis.Redis`` (not closed by :meth:`close`)
    or a URL (a client with a 0.25 s socket timeout is built and owned here).
    """

    def __init__(
        self,
        client_or_url: Any = None,
        *,
        client: Any = None,
        namespace: str = "paywatch:limit:",
        combine: bool = True,
    ) -> None:
        self._client, self._owned = client_for(client_or_url, client)
        self.namespace = namespace
        self._script: Any = self._client.register_script(TOKEN_BUCKET_LUA)
        self.combine = combine
        self._mu = threading.Lock()
        self._queue: list[_Ask] = []
        self._sending = False
        self._last_batch = 0

    def acquire(self, key: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        check_acquire_args(rate, burst, cost)
        args = [repr(rate), repr(burst), repr(cost)]
        if not self.combine:
            with _UNAVAILABLE:
                reply = self._script(keys=[self.namespace + key], args=args)
            return _decision(reply)
        ask = _Ask((self.namespace + key).encode(), [a.encode() for a in args])
        with self._mu:
            self._queue.append(ask)
            lead, self._sending = not self._sending, True
        if not lead:
            if not ask.wait(_WAIT_S):
                with self._mu:  # promotions happen under the lock: decide once, here
                    if not ask.woken:
                        if ask in self._queue:
                            self._queue.remove(ask)
                        raise LimitBackendUnavailable(
                            "limit store: no answer in time", resource="redis"
                        )
            if ask.finished:
                return ask.outcome()
            # promoted: the previous sender handed the connection over to us
        try:
            if self._last_batch > 1:
                # contended: let threads about to ask (just woken by the previous answer)
                # join this round trip rather than wait for the next one
                time.sleep(0)
            while not ask.finished:
                self._send_queued()
        finally:
            with self._mu:  # hand over to the oldest waiter, or stop sending
                if self._queue:
                    self._queue[0].wake()
                else:
                    self._sending = False
        return ask.outcome()

    def _send_queued(self) -> None:
        with self._mu:
            batch, self._queue = self._queue, []
        if not batch:
            return
        self._last_batch = len(batch)
        try:
            if len(batch) == 1:
                replies: list[Any] = [self._script(keys=[batch[0].key], args=batch[0].args)]
            else:
                replies = self._pipelined(batch)
        except redis.exceptions.RedisError as exc:
            replies = [exc] * len(batch)
        except BaseException as exc:  # never leave a waiting caller hanging
            replies = [exc] * len(batch)
            for ask, reply in zip(batch, replies, strict=True):
                ask.finish(reply)
            raise
        for ask, reply in zip(batch, replies, strict=True):
            ask.finish(reply)

    def _pipelined(self, batch: list[_Ask]) -> list[Any]:
        """One EVALSHA per decision in one pipeline. Plain ``evalsha`` rather than the
        Script object: a pipeline holding Script calls first asks ``SCRIPT EXISTS`` in a
        round trip of its own, every time. After a Redis restart (NOSCRIPT) the script
        is loaded and those decisions sent once more: a NOSCRIPT reply took no tokens."""
        replies = self._evalsha_all(batch)
        redo = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if redo:
            self._script.sha = self._client.script_load(TOKEN_BUCKET_LUA)
            again = self._evalsha_all([batch[i] for i in redo])
            for i, reply in zip(redo, again, strict=True):
                replies[i] = reply
        return replies

    def _evalsha_all(self, batch: list[_Ask]) -> list[Any]:
        """Send ``batch`` as EVALSHAs in one write and read one reply each (an error
        reply is that decision's answer). The commands are encoded here (RESP is a few
        lines): redis-py's pipeline spends more CPU per command building and checking
        them than the whole round trip is worth on a busy box."""
        sha = self._script.sha.encode()
        out = [_resp(b"EVALSHA", sha, b"1", ask.key, *ask.args) for ask in batch]
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([b"".join(out)])
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(conn.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse the connection
            raise
        finally:
            pool.release(conn)
        return replies

    def reset(self, key: str) -> None:
        with _UNAVAILABLE:
            self._client.delete(self.namespace + key)

    def close(self) -> None:
        if self._owned:
            self._client.close()
