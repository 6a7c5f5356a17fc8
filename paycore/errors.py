"""The pay core's exception tree.

Every error the pay core raises derives from :class:`PayCoreError` and carries a
stable machine-readable ``code`` and the HTTP status an API should answer with.
Driver exceptions (SQLAlchemy, psycopg, redis) never leave the package: they are
wrapped at the boundary into :class:`StorageError` or :class:`LockBackendError`.
Messages never contain secrets, SQL or connection strings. ::

    PayCoreError                            500
    ├── AuthenticationFailed                401
    │   └── BadSignature                    401
    ├── Conflict                            409
    │   ├── Busy                            409
    │   │   └── LockTimeout                 409
    │   ├── DuplicateKey                    409
    │   ├── IdempotencyConflict             409
    │   ├── InsufficientBalance             409
    │   ├── RefundExceedsPaid               409
    │   └── WrongState                      409
    ├── ContextNotGranted                   403
    ├── DependencyUnavailable               503
    │   ├── LockBackendError                503  (also a backends.BackendError)
    │   ├── RiskUnavailable                 503  (also a backends.BackendError)
    │   └── StorageError                    503
    ├── InvalidRequest                      422
    │   ├── DayNotOver                      422
    │   ├── InvalidAmount                   422
    │   ├── InvalidContext                  422
    │   │   └── UnknownPayOrg               422
    │   ├── InvalidPayTools                 422
    │   ├── MalformedRequest                400
    │   │   └── InvalidCharacters           400
    │   ├── RequestTooLarge                 413
    │   ├── UnknownCurrency                 422
    │   └── UnsupportedTradeType            422
    ├── LeaseLost                           409
    ├── LedgerError                         500
    │   └── UnbalancedEntry                 500
    ├── FourEyesRequired                    403
    ├── MerchantDisabled                    403
    ├── NotFound                            404
    │   ├── ManualActionNotFound            404
    │   ├── PayOrderNotFound                404
    │   ├── TokenNotFound                   404
    │   ├── TradeNotFound                   404
    │   └── UnknownMerchant                 404
    ├── RiskRejected                        403
    ├── ShadowDisabled                      403
    └── ShadowUnavailable                   503

    RateLimited                             429  (stability's one 429, re-exported)

Subpackages keep their own next to their code: :mod:`paycore.channels.errors` (what a
channel answers), :mod:`paycore.jobs.errors` (a task's business failure),
:mod:`paycore.db.errors` (setting up the shadow tables).
"""

from __future__ import annotations

from backends.errors import BackendError
from stability.errors import RateLimited  # noqa: F401 - the project's one 429, re-exported


class PayCoreError(Exception):
    """Root of every error raised by :mod:`paycore`."""

    code: str = "paycore_error"
    http_status: int = 500

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.details = details


# -- 400/422: the request itself is wrong ------------------------------------------------
class InvalidRequest(PayCoreError):
    """The request is malformed; nothing was written."""

    code = "invalid_request"
    http_status = 422


class MalformedRequest(InvalidRequest):
    """The body is not valid JSON, or not the expected shape at all."""

    code = "malformed_request"
    http_status = 400


class InvalidCharacters(MalformedRequest):
    """A string holds control or invisible characters (Unicode Cc, Cf, Cs, Co, Cn, Zl,
    Zp): refused before it reaches storage, a log line or a console."""

    code = "invalid_characters"


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"


class UnknownCurrency(InvalidRequest):
    code = "unknown_currency"


class InvalidContext(InvalidRequest):
    """A field of the four-element business context is missing or malformed."""

    code = "invalid_context"


class UnknownPayOrg(InvalidContext):
    """A well-formed pay org that is not one of the configured pay orgs."""

    code = "unknown_pay_org"


class DayNotOver(InvalidRequest):
    """A day's statement was asked for before the (UTC) day ended, without consent to
    reconcile an unfinished day."""

    code = "day_not_over"


class UnsupportedTradeType(InvalidRequest):
    code = "unsupported_trade_type"


class InvalidPayTools(InvalidRequest):
    """The pay tools do not fit the trade (wrong kinds, or amounts do not add up)."""

    code = "invalid_pay_tools"


# -- 401/403: who is calling ---------------------------------------------------------------
class AuthenticationFailed(PayCoreError):
    code = "unauthenticated"
    http_status = 401


class ContextNotGranted(PayCoreError):
    """The merchant is not allowed this order type, sub type or pay org."""

    code = "context_not_granted"
    http_status = 403


class RiskRejected(PayCoreError):
    """The risk check refused this payment."""

    code = "risk_rejected"
    http_status = 403


class MerchantDisabled(PayCoreError):
    code = "merchant_disabled"
    http_status = 403


# -- 404 -----------------------------------------------------------------------------------
class NotFound(PayCoreError):
    code = "not_found"
    http_status = 404


class UnknownMerchant(NotFound):
    code = "unknown_merchant"


class TradeNotFound(NotFound):
    code = "trade_not_found"


class PayOrderNotFound(NotFound):
    code = "pay_order_not_found"


class TokenNotFound(NotFound):
    """No valid API token of this merchant has the given prefix (an admin action)."""

    code = "token_not_found"


# -- 409: conflicts with current state -----------------------------------------------------
class Conflict(PayCoreError):
    code = "conflict"
    http_status = 409


class IdempotencyConflict(Conflict):
    """The caller's number was used before with a different request body."""

    code = "idempotency_conflict"


class WrongState(Conflict):
    """The order is not in a state that allows this operation."""

    code = "wrong_state"


class RefundExceedsPaid(Conflict):
    code = "refund_exceeds_paid"


class InsufficientBalance(Conflict):
    code = "insufficient_balance"


class DuplicateKey(Conflict):
    """A unique key was violated (usually a concurrent insert of the same business key)."""

    code = "duplicate"


class Busy(Conflict):
    """Another request holds the lock on this order; retry shortly."""

    code = "order_busy"


class RequestTooLarge(InvalidRequest):
    code = "request_too_large"
    http_status = 413


class BadSignature(AuthenticationFailed):
    """A channel callback's signature or timestamp did not verify."""

    code = "bad_signature"


# -- ledger invariants ---------------------------------------------------------------------
class LedgerError(PayCoreError):
    code = "ledger_error"
    http_status = 500


class UnbalancedEntry(LedgerError):
    """A journal entry's legs do not sum to zero."""

    code = "unbalanced_entry"


# -- 503: a dependency is unavailable ------------------------------------------------------
class DependencyUnavailable(PayCoreError):
    code = "dependency_unavailable"
    http_status = 503


class StorageError(DependencyUnavailable):
    """The database failed; the driver error is chained but never shown to callers."""

    code = "storage_unavailable"


class LockBackendError(DependencyUnavailable, BackendError):
    code = "lock_unavailable"


class RiskUnavailable(DependencyUnavailable, BackendError):
    """The risk counters (Redis) or the blocklist cannot be read; the pay link falls back
    to :meth:`paycore.risk.RiskEngine.fallback` instead of answering with this."""

    code = "risk_unavailable"


class LockTimeout(Busy):
    """The lock could not be acquired within the wait time."""

    code = "order_busy"


# -- compensation tasks (paycore.jobs.tasks still exports it) ----------------------------
class LeaseLost(PayCoreError):
    """The task's lease passed to another worker; this worker must not record a result."""

    code = "lease_lost"
    http_status = 409


# -- shadow traffic (pressure tests) -----------------------------------------------------
class ShadowDisabled(PayCoreError):
    """Shadow traffic is switched off on this deployment (``PAYWATCH_SHADOW=0``)."""

    code = "shadow_disabled"
    http_status = 403


class ShadowUnavailable(PayCoreError):
    """The shadow tables could not be prepared; real traffic is unaffected."""

    code = "shadow_unavailable"
    http_status = 503


# -- the cashier ---------------------------------------------------------------------------
class InvalidUserSegment(MalformedRequest):
    """The cashier's ``user_segment`` is not a code (1-32 of ``[A-Za-z0-9_.-]``)."""

    code = "invalid_user_segment"


# -- four-eyes manual actions (paycore.manual_actions) -----------------------------------
class FourEyesRequired(PayCoreError):
    """A manual action's approver is the person who proposed it: a second person must."""

    code = "four_eyes_required"
    http_status = 403


class ManualActionNotFound(NotFound):
    code = "manual_action_not_found"
