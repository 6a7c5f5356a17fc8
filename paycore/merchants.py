"""Merchant onboarding, token authentication and context authorisation.

A merchant gets an id, the (order type, sub type) pairs and pay orgs it may use,
and an API token. The token is shown once and stored only as its SHA-256 hash (a
random 256-bit token needs no slow hash: there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from .context import BizContext, check_code
from .db.engine import Database
from .db.schema import Merchant, MerchantPayOrg, MerchantProduct
from .errors import (
    AuthenticationFailed,
    ContextNotGranted,
    InvalidRequest,
    MerchantDisabled,
    UnknownMerchant,
)
from .ids import IdGenerator

TOKEN_PREFIX = "pwk_"


T = TypeVar("T")

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MerchantInfo:
    merchant_id: str
    name: str
    status: str
    fee_bps: int
    notify_url: str | None
    products: frozenset[tuple[str, str]]
    pay_orgs: frozenset[str]

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

    def __repr__(self) -> str:  # never print the token by accident
        return f"Onboarded(merchant_id={self.merchant.merchant_id!r}, token='***')"


class MerchantService:
    """Onboards merchants and answers "who is calling, and may they do this?"."""

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
        self._tokens: dict[str, tuple[float, str]] = {}  # token hash -> (until, merchant id)
        self._lock = threading.Lock()

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
        """Create a merchant with its grant; returns the merchant and its one-time token."""
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidRequest("name must be 1-128 characters")
        if isinstance(fee_bps, bool) or not isinstance(fee_bps, int) or not 0 <= fee_bps <= 10_000:
            raise InvalidRequest("fee_bps must be an integer within 0..10000")
        prods = {(check_code(o, "order_type"), check_code(s, "sub_type")) for o, s in products}
        orgs = {check_code(p, "pay_org_no") for p in pay_orgs}
        if not prods or not orgs:
            raise InvalidRequest("a merchant needs at least one product and one pay org")
        mid = check_code(merchant_id, "merchant_id") if merchant_id else f"M{self.ids.next_id()}"
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()

        def work(s: Session) -> None:
            s.add(
                Merchant(
                    merchant_id=mid,
                    name=name,
                    token_hash=hash_token(token),
                    token_prefix=token[:10],
                    status="active",
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

        self.db.run(work)
        return Onboarded(self.get(mid), token)

    def get(self, merchant_id: str) -> MerchantInfo:
        """The merchant and its grant (cached for a few seconds)."""
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
        """The merchant owning ``token``; :class:`AuthenticationFailed` otherwise."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise AuthenticationFailed("missing or malformed token")
        digest = hash_token(token)
        known = self._fresh(self._tokens, digest)
        if known is not None:
            return self._active(self.get(known))
        with self.db.session() as s:
            row = s.execute(
                select(Merchant.merchant_id, Merchant.token_hash).where(
                    Merchant.token_hash == digest
                )
            ).first()
        if row is None or not secrets.compare_digest(row.token_hash, digest):
            raise AuthenticationFailed("invalid token")
        with self._lock:
            self._tokens[digest] = (time.monotonic() + self.cache_ttl, row.merchant_id)
        return self._active(self.get(row.merchant_id))

    def cached_authentication(self, token: str) -> MerchantInfo | None:
        """:meth:`authenticate` answered from the caches alone; None when that needs the
        database (or must raise): the API then calls it off the event loop."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        known = self._fresh(self._tokens, hash_token(token))
        info = self._fresh(self._cache, known) if known is not None else None
        return info if info is not None and info.status == "active" else None

    def _fresh(self, cache: dict[str, tuple[float, T]], key: str) -> T | None:
        """``cache[key]`` while it has not expired, else None."""
        with self._lock:
            hit = cache.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    @staticmethod
    def _active(info: MerchantInfo) -> MerchantInfo:
        if info.status != "active":
            raise MerchantDisabled("merchant is disabled")
        return info

    def authorize(self, merchant_id: str, ctx: BizContext) -> MerchantInfo:
        info = self.get(merchant_id)
        if info.status != "active":
            raise MerchantDisabled("merchant is disabled")
        info.authorize(ctx)
        return info
