"""The merchant tables' writes, each a part of one transaction (``s``): the service
decides what to change, these say how."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..db.schema import (
    Merchant,
    MerchantApiToken,
    MerchantNotifySecret,
    MerchantPayOrg,
    MerchantProduct,
)
from ..errors import UnknownMerchant
from ..ids import IdGenerator
from .credentials import ACTIVE, SECRET_ID_LEN, SHARED_KEY_ID, TOKEN_ID_LEN, hash_token


def lock_merchant(s: Session, merchant_id: str) -> None:
    """Lock the merchant's row for this transaction (credential changes of one
    merchant run one at a time); :class:`UnknownMerchant` if there is none."""
    stmt = select(Merchant.merchant_id).where(Merchant.merchant_id == merchant_id)
    found = s.execute(stmt.with_for_update()).scalar_one_or_none()
    if found is None:
        raise UnknownMerchant("unknown merchant")


def add_merchant(
    s: Session,
    merchant_id: str,
    name: str,
    token: str,
    fee_bps: int,
    notify_url: str | None,
    now: datetime,
) -> None:
    """The merchant's row, naming ``token`` as its newest."""
    s.add(
        Merchant(
            merchant_id=merchant_id,
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


def add_grants(
    s: Session, merchant_id: str, prods: Iterable[tuple[str, str]], orgs: Iterable[str]
) -> None:
    """The merchant's products and pay orgs, in order."""
    s.add_all(
        [MerchantProduct(merchant_id=merchant_id, order_type=o, sub_type=st) for o, st in prods]
    )
    s.add_all([MerchantPayOrg(merchant_id=merchant_id, pay_org_no=p) for p in orgs])


def add_token(s: Session, merchant_id: str, token: str, now: datetime) -> None:
    """A new API token (its hash) of the merchant."""
    s.add(
        MerchantApiToken(
            token_hash=hash_token(token),
            merchant_id=merchant_id,
            prefix=token[:TOKEN_ID_LEN],
            created_at=now,
        )
    )


def name_newest_token(s: Session, merchant_id: str, token: str) -> None:
    """``merchants.token_hash``/``token_prefix`` name ``token`` (informational)."""
    s.execute(
        update(Merchant)
        .where(Merchant.merchant_id == merchant_id)
        .values(token_hash=hash_token(token), token_prefix=token[:TOKEN_ID_LEN])
        .execution_options(synchronize_session=False)
    )


def expire_tokens(s: Session, merchant_id: str, until: datetime) -> None:
    """The merchant's valid tokens end at ``until`` at the latest."""
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


def revoke_tokens(s: Session, merchant_id: str, key: str, now: datetime) -> int:
    """Revoke the merchant's valid tokens whose prefix is ``key``; how many."""
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


def add_notify_secret(
    s: Session, ids: IdGenerator, merchant_id: str, secret: str, now: datetime
) -> None:
    """A new notification secret of the merchant (no end)."""
    s.add(
        MerchantNotifySecret(
            id=ids.next_id(),
            merchant_id=merchant_id,
            secret=secret,
            prefix=secret[:SECRET_ID_LEN],
            created_at=now,
        )
    )


def retire_notify_secrets(
    s: Session,
    ids: IdGenerator,
    merchant_id: str,
    now: datetime,
    overlap: timedelta,
    until: datetime,
) -> None:
    """Drop the secrets that sign nothing any more, keep the first rotation's shared key
    signing until ``until`` (if there is an ``overlap``), and end the others at ``until``."""
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
                id=ids.next_id(),
                merchant_id=merchant_id,
                secret=None,
                prefix=SHARED_KEY_ID,
                created_at=now,
                expires_at=until,
            )
        )
    s.execute(
        update(n)
        .where(n.merchant_id == merchant_id, or_(n.expires_at.is_(None), n.expires_at > until))
        .values(expires_at=until)
        .execution_options(synchronize_session=False)
    )


def set_status(s: Session, merchant_id: str, status: str) -> int:
    """The merchant's status; 0 if there is no such merchant."""
    done = s.execute(
        update(Merchant)
        .where(Merchant.merchant_id == merchant_id)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


def set_lifecycle(s: Session, merchant_id: str, values: dict[str, object]) -> int:
    """Set the merchant's lifecycle settings (``trade_expiry_s``, ``confirm_hold_s``,
    ``pay_without_coupon``) given in ``values``; 0 if there is no such merchant."""
    done = s.execute(
        update(Merchant)
        .where(Merchant.merchant_id == merchant_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount)  # type: ignore[attr-defined]
