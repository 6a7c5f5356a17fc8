"""The merchant service: onboarding, credentials, authentication and authorisation
(see :mod:`paycore.merchants` for the credential model). Reads and the caches are
:class:`~.lookup.MerchantLookup`'s; the rows written are :mod:`.rows`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..context import check_code
from ..db.schema import Merchant, MerchantApiToken, MerchantNotifySecret
from ..errors import InvalidRequest, TokenNotFound, UnknownMerchant
from . import rows
from .credentials import (
    ACTIVE,
    CONFIRM_HOLD_RANGE_S,
    DEFAULT_NOTIFY_OVERLAP,
    DEFAULT_TOKEN_GRACE,
    DISABLED,
    SECRET_ID_LEN,
    TOKEN_ID_LEN,
    TRADE_EXPIRY_RANGE_S,
    IssuedNotifySecret,
    IssuedToken,
    MerchantInfo,
    MerchantSummary,
    NotifySecretInfo,
    Onboarded,
    TokenInfo,
    _new_notify_secret,
    _new_token,
    _seconds,
    _window,
)
from .lookup import MerchantLookup

log = logging.getLogger(__name__)


class MerchantService(MerchantLookup):
    """Onboards merchants, manages their credentials and answers "who is calling, and may
    they do this?" (see the package docstring for the credential model)."""

    # -- onboarding ----------------------------------------------------------------------
    def onboard(
        self,
        name: str,
        *,
        products: Iterable[tuple[str, str]],
        pay_orgs: Iterable[str],
        fee_bps: int = 0,
        notify_url: str | None = None,
        merchant_id: str | None = None,
    ) -> Onboarded:
        """Create a merchant with its grant; returns the merchant, its one-time token and
        its notification secret (both shown once)."""
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidRequest("name must be 1-128 characters")
        if isinstance(fee_bps, bool) or not isinstance(fee_bps, int) or not 0 <= fee_bps <= 10_000:
            raise InvalidRequest("fee_bps must be an integer within 0..10000")
        prods = {(check_code(o, "order_type"), check_code(s, "sub_type")) for o, s in products}
        orgs = {check_code(p, "pay_org_no") for p in pay_orgs}
        if not prods or not orgs:
            raise InvalidRequest("a merchant needs at least one product and one pay org")
        mid = check_code(merchant_id, "merchant_id") if merchant_id else f"M{self.ids.next_id()}"
        token, notify_secret = _new_token(), _new_notify_secret()
        now = self.clock()

        def work(s: Session) -> None:
            rows.add_merchant(s, mid, name, token, fee_bps, notify_url, now)
            rows.add_grants(s, mid, sorted(prods), sorted(orgs))
            rows.add_token(s, mid, token, now)
            rows.add_notify_secret(s, self.ids, mid, notify_secret, now)

        self.db.run(work)
        return Onboarded(self.get(mid), token, notify_secret)

    # -- credentials (admin actions: the console and the CLI audit them) -----------------
    def rotate_token(
        self, merchant_id: str, *, grace: timedelta = DEFAULT_TOKEN_GRACE
    ) -> IssuedToken:
        """Issue a new API token; the merchant's other valid tokens work until
        ``now + grace`` (0: refused at once, the answer to a leaked token)."""
        until = self.clock() + _window(grace, "grace")
        token = _new_token()

        def work(s: Session) -> None:
            now = self.clock()
            rows.lock_merchant(s, merchant_id)
            rows.expire_tokens(s, merchant_id, until)
            rows.add_token(s, merchant_id, token, now)
            rows.name_newest_token(s, merchant_id, token)

        self.db.run(work)
        self._forget(merchant_id)
        log.info(
            "merchant %s: API token rotated, new %s, old ones valid until %s",
            merchant_id,
            token[:TOKEN_ID_LEN],
            until.isoformat(),
        )
        return IssuedToken(merchant_id, token, token[:TOKEN_ID_LEN], until)

    def revoke_token(self, merchant_id: str, prefix: str) -> int:
        """Refuse the merchant's valid tokens starting with ``prefix`` (at least
        :data:`TOKEN_ID_LEN` characters, as listed) from now on; returns how many.

        :class:`TokenNotFound` if none matches. Revoking the last token leaves the
        merchant without one until :meth:`rotate_token`.
        """
        if not isinstance(prefix, str) or not TOKEN_ID_LEN <= len(prefix) <= 16:
            raise InvalidRequest(f"a token prefix of {TOKEN_ID_LEN} characters is required")
        key = prefix[:TOKEN_ID_LEN]

        def work(s: Session) -> int:
            now = self.clock()
            rows.lock_merchant(s, merchant_id)
            return rows.revoke_tokens(s, merchant_id, key, now)

        revoked = self.db.run(work)
        if not revoked:
            raise TokenNotFound("no valid token of this merchant has that prefix")
        self._forget(merchant_id)
        log.info("merchant %s: API token %s revoked", merchant_id, key)
        return revoked

    def rotate_notify_secret(
        self, merchant_id: str, *, overlap: timedelta = DEFAULT_NOTIFY_OVERLAP
    ) -> IssuedNotifySecret:
        """Add a new notification secret; the current ones keep signing until
        ``now + overlap`` (notifications meanwhile carry a signature per secret)."""
        overlap = _window(overlap, "overlap")
        until = self.clock() + overlap
        secret = _new_notify_secret()

        def work(s: Session) -> None:
            now = self.clock()
            rows.lock_merchant(s, merchant_id)
            rows.retire_notify_secrets(s, self.ids, merchant_id, now, overlap, until)
            rows.add_notify_secret(s, self.ids, merchant_id, secret, now)

        self.db.run(work)
        log.info(
            "merchant %s: notification secret rotated, new %s, old ones sign until %s",
            merchant_id,
            secret[:SECRET_ID_LEN],
            until.isoformat(),
        )
        return IssuedNotifySecret(merchant_id, secret, secret[:SECRET_ID_LEN], until)

    def disable(self, merchant_id: str) -> MerchantInfo:
        """Refuse every API call of the merchant (403 ``merchant_disabled``)."""
        return self._set_status(merchant_id, DISABLED)

    def enable(self, merchant_id: str) -> MerchantInfo:
        """Let a disabled merchant call the API again."""
        return self._set_status(merchant_id, ACTIVE)

    def _set_status(self, merchant_id: str, status: str) -> MerchantInfo:
        if not self.db.run(lambda s: rows.set_status(s, merchant_id, status)):
            raise UnknownMerchant("unknown merchant")
        self._forget(merchant_id)
        log.info("merchant %s: %s", merchant_id, status)
        return self.get(merchant_id)

    # -- how the merchant's trades end (an admin action: the CLI audits it) --------------
    def configure(
        self,
        merchant_id: str,
        *,
        trade_expiry_s: int | None = None,
        confirm_hold_s: int | None = None,
        pay_without_coupon: bool | None = None,
    ) -> MerchantInfo:
        """Set how long an unpaid trade lives (60 s .. 30 days), how long a paid guaranteed
        trade waits before it confirms itself (0 .. 90 days) and whether a coupon outage
        lets a pay go on without the coupon; None keeps a setting. :class:`InvalidRequest`
        (nothing written) for a value out of range."""
        values: dict[str, object] = {}
        if trade_expiry_s is not None:
            values["trade_expiry_s"] = _seconds(
                trade_expiry_s, "trade_expiry_s", TRADE_EXPIRY_RANGE_S
            )
        if confirm_hold_s is not None:
            values["confirm_hold_s"] = _seconds(
                confirm_hold_s, "confirm_hold_s", CONFIRM_HOLD_RANGE_S
            )
        if pay_without_coupon is not None:
            if not isinstance(pay_without_coupon, bool):
                raise InvalidRequest("pay_without_coupon must be true or false")
            values["pay_without_coupon"] = pay_without_coupon
        if not values:
            raise InvalidRequest("nothing to configure")
        if not self.db.run(lambda s: rows.set_lifecycle(s, merchant_id, values)):
            raise UnknownMerchant("unknown merchant")
        self._forget(merchant_id)
        log.info("merchant %s: configured %s", merchant_id, values)
        return self.get(merchant_id)

    # -- what an admin sees (never a token or a secret) ---------------------------------
    def merchants(self) -> list[MerchantSummary]:
        """Every merchant, by id."""
        m = Merchant
        with self.db.session() as s:
            found = s.execute(
                select(m.merchant_id, m.name, m.status, m.notify_url, m.created_at).order_by(
                    m.merchant_id
                )
            ).all()
        return [MerchantSummary(*r) for r in found]

    def tokens(self, merchant_id: str) -> list[TokenInfo]:
        """The merchant's API tokens, newest first (prefixes and dates only)."""
        t = MerchantApiToken
        with self.db.session() as s:
            found = s.execute(
                select(t.prefix, t.created_at, t.expires_at, t.revoked_at)
                .where(t.merchant_id == merchant_id)
                .order_by(t.created_at.desc())
            ).all()
        return [TokenInfo(*r) for r in found]

    def notify_secrets(self, merchant_id: str) -> list[NotifySecretInfo]:
        """The merchant's notification secrets, newest first (prefixes and dates only);
        empty: signed with the platform's shared key."""
        n = MerchantNotifySecret
        with self.db.session() as s:
            found = s.execute(
                select(n.prefix, n.created_at, n.expires_at)
                .where(n.merchant_id == merchant_id)
                .order_by(n.created_at.desc(), n.id.desc())
            ).all()
        return [NotifySecretInfo(*r) for r in found]
