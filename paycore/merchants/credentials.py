"""Credentials and the views of merchants: token and secret formats, the shown-once
results of onboarding and rotation, and what listings show (never a secret).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..context import BizContext
from ..db.schema import (
    MerchantNotifySecret,
)
from ..errors import (
    ContextNotGranted,
    InvalidRequest,
)

TOKEN_PREFIX = "pwk_"
NOTIFY_SECRET_PREFIX = "whsec_"
TOKEN_ID_LEN = 10  #: ``pwk_`` and 6 characters: how a token is named in lists and logs
SECRET_ID_LEN = 12  #: ``whsec_`` and 6 characters
SHARED_KEY_ID = "platform"  #: how the platform's shared notification key is listed
ACTIVE, DISABLED = "active", "disabled"
DEFAULT_TOKEN_GRACE = timedelta(hours=24)
DEFAULT_NOTIFY_OVERLAP = timedelta(hours=24)
MAX_WINDOW = timedelta(days=30)
DEFAULT_TRADE_EXPIRY_S = 1800  #: an unpaid trade closes after 30 minutes
DEFAULT_CONFIRM_HOLD_S = 604_800  #: a paid guaranteed trade confirms itself after 7 days
TRADE_EXPIRY_RANGE_S = (60, 30 * 86_400)  #: 1 minute .. 30 days
CONFIRM_HOLD_RANGE_S = (0, 90 * 86_400)  #: at once .. 90 days


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _new_notify_secret() -> str:
    return NOTIFY_SECRET_PREFIX + secrets.token_urlsafe(32)


def _seconds(value: object, what: str, bounds: tuple[int, int]) -> int:
    """``value`` if it is a whole number of seconds within ``bounds``; else
    :class:`InvalidRequest` naming the range."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{what} must be whole seconds within {low}..{high}")
    return value


def _window(value: timedelta, what: str) -> timedelta:
    """``value`` if it is a duration within 0 .. 30 days; :class:`InvalidRequest` otherwise."""
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= MAX_WINDOW:
        raise InvalidRequest(f"{what} must be a duration between 0 and 30 days")
    return value


@dataclass(frozen=True, slots=True)
class MerchantInfo:
    merchant_id: str
    name: str
    status: str
    fee_bps: int
    notify_url: str | None
    products: frozenset[tuple[str, str]]
    pay_orgs: frozenset[str]
    trade_expiry_s: int = DEFAULT_TRADE_EXPIRY_S  #: an unpaid trade closes this long after creation
    confirm_hold_s: int = DEFAULT_CONFIRM_HOLD_S  #: a paid guaranteed trade confirms after this
    pay_without_coupon: bool = False  #: a coupon outage lets the pay go on without the coupon

    def authorize(self, ctx: BizContext) -> None:
        """Raise :class:`ContextNotGranted` unless ``ctx`` is inside this merchant's grant."""
        if ctx.merchant_id != self.merchant_id:
            raise ContextNotGranted("context belongs to another merchant")
        if (ctx.order_type, ctx.sub_type) not in self.products:
            raise ContextNotGranted("order type / sub type not granted to this merchant")
        if ctx.pay_org_no not in self.pay_orgs:
            raise ContextNotGranted("pay org not granted to this merchant")


@dataclass(frozen=True, slots=True)
class Onboarded:
    merchant: MerchantInfo
    token: str  #: shown once; only its hash is stored
    notify_secret: str  #: shown once; kept (never shown again) to sign notifications

    def __repr__(self) -> str:  # never print a secret by accident
        mid = self.merchant.merchant_id
        return f"Onboarded(merchant_id={mid!r}, token='***', notify_secret='***')"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token from :meth:`MerchantService.rotate_token` (shown once)."""

    merchant_id: str
    token: str
    prefix: str
    old_valid_until: datetime  #: the end of the previous tokens' grace

    def __repr__(self) -> str:
        return f"IssuedToken(merchant_id={self.merchant_id!r}, prefix={self.prefix!r}, token='***')"


@dataclass(frozen=True, slots=True)
class IssuedNotifySecret:
    """A new notification secret from :meth:`MerchantService.rotate_notify_secret`."""

    merchant_id: str
    secret: str
    prefix: str
    old_valid_until: datetime  #: until then notifications are signed with the old one too

    def __repr__(self) -> str:
        return (
            f"IssuedNotifySecret(merchant_id={self.merchant_id!r}, "
            f"prefix={self.prefix!r}, secret='***')"
        )


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One API token as an admin sees it: its prefix and dates, never the token."""

    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """``revoked``, ``expired``, ``grace`` (valid until ``expires_at``) or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if now >= self.expires_at else "grace"
        return "active"


@dataclass(frozen=True, slots=True)
class NotifySecretInfo:
    """One notification secret as an admin sees it: its prefix and dates."""

    prefix: str  #: :data:`SHARED_KEY_ID` for the platform's shared key
    created_at: datetime
    expires_at: datetime | None

    def state(self, now: datetime) -> str:
        """``expired``, ``overlap`` (signs until ``expires_at``) or ``active``."""
        if self.expires_at is not None:
            return "expired" if now >= self.expires_at else "overlap"
        return "active"


@dataclass(frozen=True, slots=True)
class MerchantSummary:
    """A merchant in the admin list."""

    merchant_id: str
    name: str
    status: str
    notify_url: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Grant:
    """A token lookup: whose token it is and until when it is valid (None: no end)."""

    merchant_id: str
    expires_at: datetime | None


def notify_keys(
    session: Session, merchant_ids: Iterable[str], now: datetime
) -> dict[str, list[str | None]]:
    """The keys each merchant's notifications are signed with at ``now``, newest first.

    A merchant with no secret at all is absent (it is signed with the platform's shared
    key); ``None`` in a list stands for that shared key during a first rotation's
    overlap. Read through ``session`` (the delivery's claim transaction).
    """
    ids = sorted(set(merchant_ids))
    if not ids:
        return {}
    n = MerchantNotifySecret
    rows = session.execute(
        select(n.merchant_id, n.secret, n.expires_at)
        .where(n.merchant_id.in_(ids))
        .order_by(n.merchant_id, n.created_at.desc(), n.id.desc())
    ).all()
    keys: dict[str, list[str | None]] = {}
    for row in rows:
        live = keys.setdefault(row.merchant_id, [])
        if row.expires_at is None or row.expires_at > now:
            live.append(row.secret)
    return keys


def describe(info: TokenInfo | NotifySecretInfo, now: datetime) -> dict[str, Any]:
    """A row for a table or a CLI listing: the prefix, state and dates (no secret)."""
    return {
        "prefix": info.prefix,
        "state": info.state(now),
        "created_at": info.created_at,
        "valid_until": info.expires_at,
        "revoked_at": getattr(info, "revoked_at", None),
    }
