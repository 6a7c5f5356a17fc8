"""How a compensation task's handler says why it did not finish."""

from __future__ import annotations

from ..errors import PayCoreError


class BusinessFailure(PayCoreError):
    """A definite business answer (refused, invalid): retrying cannot change it."""

    code = "business_failure"
    http_status = 422


class RefundPending(PayCoreError):
    """The channel has not finished a refund yet: a system condition, retried later."""

    code = "refund_pending"
    http_status = 503
