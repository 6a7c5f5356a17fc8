"""The merchant service: onboarding, credentials, authentication and authorisation
(see :mod:`paycore.merchants` for the credential model).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..context import BizContext, check_code
from ..db.engine import Database
from ..db.schema import (
    Merchant,
    MerchantApiToken,
    MerchantNotifySecret,
    MerchantPayOrg,
    MerchantProduct,
)
from ..errors import (
    AuthenticationFailed,
    InvalidRequest,
    MerchantDisabled,
    TokenNotFound,
    UnknownMerchant,
)
from ..ids import IdGenerator
from .credentials import (
    ACTIVE,
    DEFAULT_NOTIFY_OVERLAP,
    DEFAULT_TOKEN_GRACE,
    DISABLED,
    SECRET_ID_LEN,
    SHARED_KEY_ID,
    TOKEN_ID_LEN,
    TOKEN_PREFIX,
    IssuedNotifySecret,
    IssuedToken,
    MerchantInfo,
    MerchantSummary,
    NotifySecretInfo,
    Onboarded,
    TokenInfo,
    _Grant,
    _new_notify_secret,
    _new_token,
    _window,
    hash_token,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class MerchantService:
    """Onboards merchants, manages their credentials and answers "who is calling, and may
    they do this?" (see the module docstring for the credential model)."""

    def __init__(
        self,
        db: Database,
        ids: IdGenerator,
        clock: Callable[[], datetime],
        *,
        cache_ttl: float = 5.0,
    ) -> None:
        self.db, self.ids, self.clock = db, ids, clock
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, MerchantInfo]] = {}
        self._tokens: dict[str, tuple[float, _Grant]] = {}  # token hash -> (until, grant)
        self._lock = threading.Lock()

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
            s.add(
                Merchant(
                    merchant_id=mid,
                    name=name,
                    token_hash=hash_token(token),
                    token_prefix=token[:TOKEN_ID_LEN],
                    status=ACTIVE,
                    fee_bps=fee_bps,
                    notify_url=notify_url,
                    created_at=now,
                )
            )
            s.flush()
            s.add_all(
                [
                    MerchantProduct(merchant_id=mid, order_type=o, sub_type=st)
                    for o, st in sorted(prods)
                ]
            )
            s.add_all([MerchantPayOrg(merchant_id=mid, pay_org_no=p) for p in sorted(orgs)])
            self._add_token(s, mid, token, now)
            self._add_notify_secret(s, mid, notify_secret, now)

        self.db.run(work)
        return Onboarded(self.get(mid), token, notify_secret)

    # -- who is calling ------------------------------------------------------------------
    def get(self, merchant_id: str) -> MerchantInfo:
        """The merchant and its grant (cached for ``cache_ttl`` seconds)."""
        hit = self._fresh(self._cache, merchant_id)
        if hit is not None:
            return hit
        with self.db.session() as s:
            m = s.get(Merchant, merchant_id)
            if m is None:
                raise UnknownMerchant("unknown merchant")
            prods = s.execute(
                select(MerchantProduct.order_type, MerchantProduct.sub_type).where(
                    MerchantProduct.merchant_id == merchant_id
                )
            ).all()
            orgs = (
                s.execute(
                    select(MerchantPayOrg.pay_org_no).where(
                        MerchantPayOrg.merchant_id == merchant_id
                    )
                )
                .scalars()
                .all()
            )
            info = MerchantInfo(
                m.merchant_id,
                m.name,
                m.status,
                m.fee_bps,
                m.notify_url,
                frozenset((o, st) for o, st in prods),
                frozenset(orgs),
            )
        with self._lock:
            self._cache[merchant_id] = (time.monotonic() + self.cache_ttl, info)
        return info

    def authenticate(self, token: str | None) -> MerchantInfo:
        """The merchant owning ``token``: :class:`AuthenticationFailed` for an unknown,
        revoked or expired token, :class:`MerchantDisabled` for a disabled merchant."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise AuthenticationFailed("missing or malformed token")
        digest = hash_token(token)
        grant = self._fresh(self._tokens, digest)
        if grant is None:
            grant = self._lookup(digest)
            with self._lock:
                self._tokens[digest] = (time.monotonic() + self.cache_ttl, grant)
        if not self._valid(grant):
            raise AuthenticationFailed("invalid token")
        return self._active(self.get(grant.merchant_id))

    def cached_authentication(self, token: str) -> MerchantInfo | None:
        """:meth:`authenticate` answered from the caches alone; None when that needs the
        database (or must raise): the API then calls it off the event loop."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        grant = self._fresh(self._tokens, hash_token(token))
        if grant is None or not self._valid(grant):
            return None
        info = self._fresh(self._cache, grant.merchant_id)
        return info if info is not None and info.status == ACTIVE else None

    def authorize(self, merchant_id: str, ctx: BizContext) -> MerchantInfo:
        info = self._active(self.get(merchant_id))
        info.authorize(ctx)
        return info

    def _lookup(self, digest: str) -> _Grant:
        """The grant of the token hashed to ``digest``; refused if unknown or revoked."""
        t = MerchantApiToken
        with self.db.session() as s:
            row = s.execute(
                select(t.merchant_id, t.expires_at).where(
                    t.token_hash == digest, t.revoked_at.is_(None)
                )
            ).first()
        if row is None:
            raise AuthenticationFailed("invalid token")
        return _Grant(row.merchant_id, row.expires_at)

    def _valid(self, grant: _Grant) -> bool:
        return grant.expires_at is None or self.clock() < grant.expires_at

    def _fresh(self, cache: dict[str, tuple[float, T]], key: str) -> T | None:
        """``cache[key]`` while it has not expired, else None."""
        with self._lock:
            hit = cache.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    @staticmethod
    def _active(info: MerchantInfo) -> MerchantInfo:
        if info.status != ACTIVE:
            raise MerchantDisabled("merchant is disabled")
        return info

    def _forget(self, merchant_id: str) -> None:
        """Drop this replica's cached rows of ``merchant_id`` (others expire within the TTL)."""
        with self._lock:
            self._cache.pop(merchant_id, None)
            for digest in [d for d, (_, g) in self._tokens.items() if g.merchant_id == merchant_id]:
                del self._tokens[digest]

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
            self._lock_merchant(s, merchant_id)
            t = MerchantApiToken
            s.execute(
                update(t)
                .where(
                    t.merchant_id == merchant_id,
                    t.revoked_at.is_(None),
                    or_(t.expires_at.is_(None), t.expires_at > until),
                )
                .values(expires_at=until)
                .execution_options(synchronize_session=False)
            )
            self._add_token(s, merchant_id, token, now)
            s.execute(
                update(Merchant)
                .where(Merchant.merchant_id == merchant_id)
                .values(token_hash=hash_token(token), token_prefix=token[:TOKEN_ID_LEN])
                .execution_options(synchronize_session=False)
            )

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
            self._lock_merchant(s, merchant_id)
            t = MerchantApiToken
            done = s.execute(
                update(t)
                .where(
                    t.merchant_id == merchant_id,
                    t.prefix == key,
                    t.revoked_at.is_(None),
                    or_(t.expires_at.is_(None), t.expires_at > now),
                )
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

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
            self._lock_merchant(s, merchant_id)
            n = MerchantNotifySecret
            # a secret that signs nothing any more is not kept
            s.execute(
                delete(n)
                .where(n.merchant_id == merchant_id, n.expires_at.is_not(None), n.expires_at <= now)
                .execution_options(synchronize_session=False)
            )
            held = s.execute(
                select(func.count()).select_from(n).where(n.merchant_id == merchant_id)
            ).scalar_one()
            if not held and overlap:  # first rotation: the shared key signs on meanwhile
                s.add(
                    n(
                        id=self.ids.next_id(),
                        merchant_id=merchant_id,
                        secret=None,
                        prefix=SHARED_KEY_ID,
                        created_at=now,
                        expires_at=until,
                    )
                )
            s.execute(
                update(n)
                .where(
                    n.merchant_id == merchant_id, or_(n.expires_at.is_(None), n.expires_at > until)
                )
                .values(expires_at=until)
                .execution_options(synchronize_session=False)
            )
            self._add_notify_secret(s, merchant_id, secret, now)

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
        def work(s: Session) -> int:
            done = s.execute(
                update(Merchant)
                .where(Merchant.merchant_id == merchant_id)
                .values(status=status)
                .execution_options(synchronize_session=False)
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

        if not self.db.run(work):
            raise UnknownMerchant("unknown merchant")
        self._forget(merchant_id)
        log.info("merchant %s: %s", merchant_id, status)
        return self.get(merchant_id)

    def _lock_merchant(self, s: Session, merchant_id: str) -> None:
        """Lock the merchant's row for this transaction (credential changes of one
        merchant run one at a time); :class:`UnknownMerchant` if there is none."""
        stmt = select(Merchant.merchant_id).where(Merchant.merchant_id == merchant_id)
        found = s.execute(stmt.with_for_update()).scalar_one_or_none()
        if found is None:
            raise UnknownMerchant("unknown merchant")

    @staticmethod
    def _add_token(s: Session, merchant_id: str, token: str, now: datetime) -> None:
        s.add(
            MerchantApiToken(
                token_hash=hash_token(token),
                merchant_id=merchant_id,
                prefix=token[:TOKEN_ID_LEN],
                created_at=now,
            )
        )

    def _add_notify_secret(self, s: Session, merchant_id: str, secret: str, now: datetime) -> None:
        s.add(
            MerchantNotifySecret(
                id=self.ids.next_id(),
                merchant_id=merchant_id,
                secret=secret,
                prefix=secret[:SECRET_ID_LEN],
                created_at=now,
            )
        )

    # -- what an admin sees (never a token or a secret) ---------------------------------
    def merchants(self) -> list[MerchantSummary]:
        """Every merchant, by id."""
        m = Merchant
        with self.db.session() as s:
            rows = s.execute(
                select(m.merchant_id, m.name, m.status, m.notify_url, m.created_at).order_by(
                    m.merchant_id
                )
            ).all()
        return [MerchantSummary(*r) for r in rows]

    def tokens(self, merchant_id: str) -> list[TokenInfo]:
        """The merchant's API tokens, newest first (prefixes and dates only)."""
        t = MerchantApiToken
        with self.db.session() as s:
            rows = s.execute(
                select(t.prefix, t.created_at, t.expires_at, t.revoked_at)
                .where(t.merchant_id == merchant_id)
                .order_by(t.created_at.desc())
            ).all()
        return [TokenInfo(*r) for r in rows]

    def notify_secrets(self, merchant_id: str) -> list[NotifySecretInfo]:
        """The merchant's notification secrets, newest first (prefixes and dates only);
        empty: signed with the platform's shared key."""
        n = MerchantNotifySecret
        with self.db.session() as s:
            rows = s.execute(
                select(n.prefix, n.created_at, n.expires_at)
                .where(n.merchant_id == merchant_id)
                .order_by(n.created_at.desc(), n.id.desc())
            ).all()
        return [NotifySecretInfo(*r) for r in rows]
