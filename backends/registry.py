"""One registry of URL schemes: a backend is chosen by the scheme of its URL.

A backend class (or factory) registers itself for a kind and its schemes::

    @register(LOCK, "redis", "rediss", "unix")
    class RedisLock(DistributedLock): ...

and :func:`from_url` builds one: ``from_url(LOCK, "redis://...")``. Every backend is
called as ``backend(url, **deps)`` (an in-process one, ``memory://``, as
``backend(**deps)``) with the live dependencies the composition root hands in (a Redis
``client=``, a SQLAlchemy ``engine=``), which a backend uses instead of building its own.

Registration happens when a backend's module is imported; each package imports its
backend modules from its ``__init__``, so importing the package registers them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import UnknownBackend

__all__ = [
    "BREAKER_STORE",
    "LIMITS",
    "LOCK",
    "METRIC_STORE",
    "RISK_COUNTERS",
    "MEMORY",
    "from_url",
    "kinds",
    "lookup",
    "register",
    "scheme_of",
    "schemes",
]

#: the kinds of backend the project chooses by URL
LOCK = "lock"
LIMITS = "limits"
BREAKER_STORE = "breaker store"
METRIC_STORE = "metric store"
RISK_COUNTERS = "risk counters"
#: the scheme of ``None``, ``""``, ``"memory"`` and ``"memory://"``: in-process backends
MEMORY = "memory"

T = TypeVar("T")

_lock = threading.Lock()
_registry: dict[str, dict[str, Callable[..., Any]]] = {}


def register(kind: str, *schemes: str) -> Callable[[T], T]:
    """Class (or factory) decorator: ``kind`` URLs with one of ``schemes`` build it.

    A scheme already taken by another backend of the same kind is a programming error
    (:class:`ValueError`); registering the same object again is harmless (a reload).
    """
    if not schemes:
        raise ValueError("register() needs at least one scheme")

    def decorate(backend: T) -> T:
        with _lock:
            table = _registry.setdefault(kind, {})
            for scheme in schemes:
                taken = table.get(scheme.lower())
                if taken is not None and _name(taken) != _name(backend):
                    raise ValueError(f"{kind} scheme {scheme!r} is already {_name(taken)}")
            for scheme in schemes:
                table[scheme.lower()] = backend  # type: ignore[assignment]
        return backend

    return decorate


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def scheme_of(url: str | None) -> str:
    """The lower-cased scheme of ``url``: ``memory`` for ``None``, ``""`` and a bare
    ``"memory"``; for ``postgresql+psycopg://`` it is ``postgresql+psycopg``."""
    if not url or url.lower() == MEMORY:
        return MEMORY
    scheme, sep, _rest = url.partition("://")
    if not sep:
        scheme, sep, _rest = url.partition(":")
    return scheme.lower() if sep else ""


def kinds() -> list[str]:
    """Every kind with at least one registered backend, sorted."""
    with _lock:
        return sorted(_registry)


def schemes(kind: str) -> list[str]:
    """The schemes registered for ``kind``, sorted (empty for an unknown kind)."""
    with _lock:
        return sorted(_registry.get(kind, ()))


def lookup(kind: str, url: str | None) -> Callable[..., Any]:
    """The backend registered for the scheme of ``url``; a SQLAlchemy-style
    ``dialect+driver`` scheme falls back to its dialect.

    Raises :class:`UnknownBackend` naming the scheme and the known ones (never the URL,
    which may carry a password).
    """
    scheme = scheme_of(url)
    with _lock:
        table = _registry.get(kind)
        if table is None:
            raise UnknownBackend(
                f"unknown backend kind {kind!r} (known: {', '.join(sorted(_registry))})"
            )
        backend = table.get(scheme) or table.get(scheme.partition("+")[0])
        known = ", ".join(sorted(table))
    if backend is None:
        raise UnknownBackend(
            f"unsupported {kind} backend scheme: {scheme or '(none)'!r} (known: {known})"
        )
    return backend


def from_url(kind: str, url: str | None, **deps: Any) -> Any:
    """Build the ``kind`` backend for ``url``: ``backend(url, **deps)``, or
    ``backend(**deps)`` for an in-process (``memory``) one, which has nothing to connect to.

    ``deps`` are live objects handed in by the composition root (``client=`` a Redis
    client, ``engine=`` a SQLAlchemy engine) and backend options (``namespace=``...); a
    backend that gets a client uses it (and leaves it open) instead of building its own
    from the URL. A dependency given as ``None`` is left out (the backend's default).
    """
    backend = lookup(kind, url)
    given = {name: value for name, value in deps.items() if value is not None}
    if scheme_of(url) == MEMORY:
        return backend(**given)
    return backend(url, **given)
