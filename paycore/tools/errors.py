"""Errors of the pay tools (see :mod:`paycore.errors` for the tree they join)."""

from __future__ import annotations

from ..errors import InvalidPayTools, PayCoreError

__all__ = ["ToolSkipped", "UnknownTool"]


class ToolSkipped(PayCoreError):
    """A weak tool is unavailable right now and the pay may go on without it.

    ``resource`` names the dependency that failed (``"coupon"``): when the pay may not go
    on without the tool, the registry turns this into a 503 naming that resource.
    """

    code = "tool_skipped"
    http_status = 503

    def __init__(self, message: str = "", *, resource: str | None = None, **details: object):
        super().__init__(message, resource=resource, **details)
        self.resource = resource


class UnknownTool(InvalidPayTools):
    """No pay tool of that name is registered (400 ``invalid_pay_tools``)."""
