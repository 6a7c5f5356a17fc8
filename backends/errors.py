"""The backends package's exceptions, and the one place driver errors are translated.

::

    Exception
    ├── BackendError: a backend's store failed (Redis, a database, an HTTP API)
    │   ├── HttpUnavailable: an HTTP request got no answer (``backends.http``)
    │   ├── HttpStatusError: an HTTP answer's status was not 2xx (``raise_for_status``)
    │   ├── paycore.errors.LockBackendError
    │   ├── stability.errors.LimitBackendUnavailable, BreakerStoreUnavailable,
    │   │   MapStorageError, SwitchStorageError
    │   └── collectors.errors.StoreError, QueryBackendError
    └── ValueError
        └── UnknownBackend: no backend of a kind is registered for a URL's scheme

A package's storage error derives from its own root (``PayCoreError``,
``StabilityError``, ``CollectorsError``) *and* from :class:`BackendError`, so callers
catch it either way. A backend never lets a driver error out: it runs driver calls
inside a :class:`DriverErrors` (a context manager and decorator) that raises the
package's error instead, with a message that never holds a URL (it may carry a password).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "BackendError",
    "DriverErrors",
    "HttpStatusError",
    "HttpUnavailable",
    "UnknownBackend",
    "driver_errors",
]

F = TypeVar("F", bound=Callable[..., Any])

#: (module, attribute) of each driver's root error class. Looked up in ``sys.modules``
#: only: a driver that was never imported cannot have raised anything.
_DRIVER_ROOTS = (
    ("redis.exceptions", "RedisError"),
    ("sqlalchemy.exc", "SQLAlchemyError"),
    ("urllib3.exceptions", "HTTPError"),
)


class BackendError(Exception):
    """Root of the errors a backend raises when the store behind it fails.

    Never raised as such: each package raises its own subclass."""


class HttpUnavailable(BackendError):
    """An HTTP request got no answer: the connection was refused or reset, it timed out
    (``timed_out`` is True), the URL was malformed, or the peer broke the protocol.

    Raised by :class:`backends.http.JsonHttp` for every urllib3 error; the message names
    the error's class or the timeout, never the URL (it may carry a
    password or a token). An answer with any status code is not this error."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class HttpStatusError(BackendError):
    """An HTTP answer's status was not 2xx, raised by
    :meth:`backends.http.Response.raise_for_status`; the message is ``HTTP <status>``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class UnknownBackend(ValueError):
    """No backend of the kind asked for is registered for the URL's scheme (or the kind
    itself is unknown). The message names the scheme and the known ones, never the URL."""


def driver_errors() -> tuple[type[BaseException], ...]:
    """The error classes that mean "the store failed": ``OSError`` (``ConnectionError``,
    ``TimeoutError``, ...) and the root error of every driver imported so far
    (``redis.RedisError``, ``sqlalchemy.exc.SQLAlchemyError``,
    ``urllib3.exceptions.HTTPError``)."""
    found: list[type[BaseException]] = [OSError]
    for module, name in _DRIVER_ROOTS:
        mod = sys.modules.get(module)
        if mod is not None:
            found.append(getattr(mod, name))
    return tuple(found)


class DriverErrors:
    """Turns a driver error into the package's storage error, once, for every backend.

    ``to(exc)`` builds the package's error (a :class:`BackendError`) from the driver
    error; ``chain=False`` hides the driver error from tracebacks (``raise ... from
    None``). ``catch`` narrows what counts as a driver error (default
    :func:`driver_errors`). A :class:`BackendError` raised inside passes unchanged.

    Stateless, so one instance serves every call and thread::

        _UNAVAILABLE = DriverErrors(lambda exc: LockBackendError("lock backend unavailable"))

        with _UNAVAILABLE:
            client.set(...)

        @_UNAVAILABLE
        def release(...): ...
    """

    __slots__ = ("_catch", "_chain", "_to")

    def __init__(
        self,
        to: Callable[[BaseException], BaseException],
        *,
        chain: bool = True,
        catch: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self._to, self._chain, self._catch = to, chain, catch

    def matches(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a driver error this wrapper translates."""
        if not isinstance(exc, Exception) or isinstance(exc, BackendError):
            return False
        return isinstance(exc, self._catch or driver_errors())

    def convert(self, exc: BaseException) -> BaseException:
        """The package's error for the driver error ``exc``, chained as configured."""
        error = self._to(exc)
        if self._chain:
            error.__cause__ = exc
        else:
            error.__suppress_context__ = True
        return error

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # never swallows: a driver error leaves as the package's error, others as is
        if exc is not None and self.matches(exc):
            raise self.convert(exc)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` so its driver errors are translated."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
