"""The stability package's exception tree.

Every error names the dependency (resource) it is about, so the API can answer
503 with a code that tells on-call which dependency failed.
"""

from __future__ import annotations


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
    code = "breaker_open"


class CallTimeout(DependencyFailed):
    code = "dependency_timeout"


class RateLimited(StabilityError):
    """A limit refused the call; ``retry_after`` seconds until a token is free."""

    code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str = "", *, resource: str | None = None, retry_after: float = 1.0
    ) -> None:
        super().__init__(message, resource=resource)
        self.retry_after = retry_after


class LimitBackendUnavailable(StabilityError):
    """The cluster-wide limit store (Redis) is unreachable."""

    code = "limit_backend_unavailable"
    http_status = 503


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


class UnknownResource(StabilityError):
    code = "unknown_resource"
    http_status = 404
