"""The stability package's exception tree.

Every error names the dependency (resource) it is about, so the API can answer
503 with a code that tells on-call which dependency failed::

    StabilityError
    ├── DependencyFailed (503): a strong dependency failed, fail fast
    │   ├── BreakerOpen
    │   ├── BulkheadFull: the resource's bulkhead has no free slot
    │   └── CallTimeout
    ├── RateLimited (429): a limit refused the call; the project's one rate-limit error
    ├── LimitBackendUnavailable (503, also BackendError): the limit store is unreachable
    ├── BreakerStoreUnavailable (503, also BackendError): the shared breaker store is
    │   unreachable
    ├── MapStorageError (503, also BackendError): the dependency map's database failed
    ├── SwitchStorageError (503, also BackendError): the switch store's database failed
    ├── InvalidDependency (422): a malformed resource or edge, or a cyclic map
    ├── SwitchError (422): a switch change was refused
    │   ├── ApprovalError (409)
    │   ├── SwitchConflict (409)
    │   └── UnknownSwitchTarget (404): no resource or limit rule of that name
    └── UnknownResource (404)

The storage errors derive from :class:`backends.errors.BackendError` as well: a driver
error (Redis, SQLAlchemy) never leaves the package as such.
"""

from __future__ import annotations

from backends.errors import BackendError

__all__ = [
    "ApprovalError",
    "BreakerOpen",
    "BreakerStoreUnavailable",
    "BulkheadFull",
    "CallTimeout",
    "DependencyFailed",
    "InvalidDependency",
    "LimitBackendUnavailable",
    "MapStorageError",
    "RateLimited",
    "StabilityError",
    "SwitchConflict",
    "SwitchError",
    "SwitchStorageError",
    "UnknownResource",
    "UnknownSwitchTarget",
]


class StabilityError(Exception):
    """Root of every error raised by :mod:`stability`."""

    code: str = "stability_error"
    http_status: int = 500

    def __init__(self, message: str = "", *, resource: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.resource = resource


class DependencyFailed(StabilityError):
    """A strong dependency failed (error, timeout, open breaker): fail fast."""

    code = "dependency_failed"
    http_status = 503

    def __init__(
        self, message: str = "", *, resource: str | None = None, reason: str = "error"
    ) -> None:
        super().__init__(message, resource=resource)
        self.reason = reason  # error | timeout | breaker_open | degraded | limited

    @property
    def public_code(self) -> str:
        """e.g. ``dependency_unavailable:channel.SANDBOX_A``."""
        return f"dependency_unavailable:{self.resource}"


class BreakerOpen(DependencyFailed):
    """The breaker of the dependency is open (or forced open)."""

    code = "breaker_open"


class BulkheadFull(DependencyFailed):
    """Every slot of the resource's bulkhead is taken: refused without calling."""

    code = "bulkhead_full"

    def __init__(
        self, message: str = "", *, resource: str | None = None, reason: str = "bulkhead_full"
    ) -> None:
        super().__init__(message, resource=resource, reason=reason)


class CallTimeout(DependencyFailed):
    """The dependency did not answer within its timeout."""

    code = "dependency_timeout"


class RateLimited(StabilityError):
    """A limit refused the call; ``retry_after`` seconds until a token is free.

    The project's one rate-limit error (``paycore.errors`` re-exports it): the guard's
    limits and the API's per-merchant limit raise it alike."""

    code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str = "", *, resource: str | None = None, retry_after: float = 1.0
    ) -> None:
        super().__init__(message, resource=resource)
        self.retry_after = retry_after


class LimitBackendUnavailable(StabilityError, BackendError):
    """The cluster-wide limit store (Redis) is unreachable."""

    code = "limit_backend_unavailable"
    http_status = 503


class BreakerStoreUnavailable(StabilityError, BackendError):
    """The shared breaker store cannot be reached; breakers go on with local state."""

    code = "breaker_store_unavailable"
    http_status = 503


class MapStorageError(StabilityError, BackendError):
    """The database holding the dependency map failed."""

    code = "map_storage_error"
    http_status = 503


class SwitchStorageError(StabilityError, BackendError):
    """The database holding the switches failed."""

    code = "switch_storage_unavailable"
    http_status = 503


class InvalidDependency(StabilityError):
    """A resource or edge spec is malformed, or the map it would make is not a DAG."""

    code = "invalid_dependency"
    http_status = 422


class SwitchError(StabilityError):
    """A switch change was refused (missing reason or expiry, bad target, ...)."""

    code = "invalid_switch"
    http_status = 422


class ApprovalError(SwitchError):
    """The approval flow was not followed (self-approval, unknown change, ...)."""

    code = "approval_error"
    http_status = 409


class SwitchConflict(SwitchError):
    """A live (pending or active) switch of the same kind already holds the target.

    ``existing_id`` names it (``None`` when it ended before it could be named)."""

    code = "switch_conflict"
    http_status = 409

    def __init__(
        self, message: str = "", *, resource: str | None = None, existing_id: int | None = None
    ) -> None:
        super().__init__(message, resource=resource)
        self.existing_id = existing_id


class UnknownSwitchTarget(SwitchError):
    """A switch names a target that acts on nothing: a degrade or forced breaker on a
    resource the map does not have, a limit change on a rule that does not exist."""

    code = "unknown_switch_target"
    http_status = 404


class UnknownResource(StabilityError):
    """The dependency map has no resource of that name."""

    code = "unknown_resource"
    http_status = 404
