"""Who is calling: merchants and token grants read through a per-replica cache
(``cache_ttl`` seconds, so a change made through another replica lands within it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select

from ..context import BizContext
from ..db.engine import Database
from ..db.schema import Merchant, MerchantApiToken, MerchantPayOrg, MerchantProduct
from ..errors import AuthenticationFailed, MerchantDisabled, UnknownMerchant
from ..ids import IdGenerator
from .credentials import ACTIVE, TOKEN_PREFIX, MerchantInfo, _Grant, hash_token

T = TypeVar("T")


class MerchantLookup:
    """Reads merchants and authenticates their tokens; the base of
    :class:`~paycore.merchants.MerchantService`, which adds the writes."""

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
                m.trade_expiry_s,
                m.confirm_hold_s,
                bool(m.pay_without_coupon),
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
        """The active merchant, if its grant covers ``ctx``."""
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
