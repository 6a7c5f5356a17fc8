"""The one place a Redis client is built (:func:`redis_client`), and how a Redis backend
takes either a URL or a live client (:func:`client_for`)."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["REDIS_SCHEMES", "SOCKET_TIMEOUT_S", "client_for", "redis_client"]

#: the URL schemes redis-py connects to
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: socket (and connect) timeout of a client: a limit check, lock or breaker read must
#: never hold a payment for long when Redis is slow or gone
SOCKET_TIMEOUT_S = 0.25


def redis_client(url: str, *, timeout: float = SOCKET_TIMEOUT_S, retries: int = 1) -> redis.Redis:
    """A client for ``url`` with ``timeout`` seconds to connect and per reply, and
    ``retries`` immediate retries of a command whose connection failed (a stale pooled
    connection after a Redis restart); no backoff sleeps. Connects on first use."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
    )


def client_for(client_or_url: Any, client: Any = None, **options: Any) -> tuple[Any, bool]:
    """``(client, owned)`` for a Redis backend built from a URL or handed a live client.

    ``client`` (keyword) wins: it is borrowed (``owned=False``: the backend must not
    close it). Otherwise ``client_or_url`` is a client (borrowed) or a URL, for which a
    client is built with :func:`redis_client` and ``options`` (owned).
    """
    if client is not None:
        return client, False
    if isinstance(client_or_url, str):
        return redis_client(client_or_url, **options), True
    if client_or_url is None:
        raise ValueError("a Redis backend needs a URL or a client")
    return client_or_url, False
