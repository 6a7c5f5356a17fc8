"""Merchants, their API tokens, notification secrets and grants (products, pay orgs)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Ts


class Merchant(Base):
    __tablename__ = "merchants"
    merchant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    fee_bps: Mapped[int] = mapped_column(Integer, default=0)
    notify_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[datetime] = mapped_column(Ts)
    #: an unpaid (created) trade closes this many seconds after its creation
    trade_expiry_s: Mapped[int] = mapped_column(Integer, default=1800, server_default="1800")
    #: a paid guaranteed trade is confirmed for the buyer this many seconds after it was paid
    confirm_hold_s: Mapped[int] = mapped_column(Integer, default=604800, server_default="604800")
    #: a coupon outage lets the pay go on without the coupon (the other parts absorb it)
    pay_without_coupon: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )


class MerchantApiToken(Base):
    """An API token of a merchant, stored as its SHA-256 hash (the token is shown once).

    A merchant has one token, or two while a rotation's grace runs: the old one carries
    ``expires_at`` (NULL: no end). ``revoked_at`` set: refused at once, kept for the record.
    ``merchants.token_hash`` names the newest token (informational; authentication reads
    this table).
    """

    __tablename__ = "merchant_api_tokens"
    __table_args__ = (Index("ix_merchant_api_tokens_merchant", "merchant_id"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.merchant_id"))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Ts)
    expires_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)


class MerchantNotifySecret(Base):
    """A merchant's notification signing secret (HMAC key), kept so the platform can sign.

    One row, or two while a rotation's overlap runs (the old one carries ``expires_at``).
    ``secret`` NULL stands for the platform's shared notification key: a merchant
    onboarded before per-merchant secrets, during the overlap of its first rotation.
    """

    __tablename__ = "merchant_notify_secrets"
    __table_args__ = (Index("ix_merchant_notify_secrets_merchant", "merchant_id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.merchant_id"))
    secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Ts)
    expires_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)


class MerchantProduct(Base):
    """An (order_type, sub_type) the merchant is granted."""

    __tablename__ = "merchant_products"
    merchant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("merchants.merchant_id"), primary_key=True
    )
    order_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    sub_type: Mapped[str] = mapped_column(String(32), primary_key=True)


class MerchantPayOrg(Base):
    """A pay org (channel institution) the merchant is granted."""

    __tablename__ = "merchant_pay_orgs"
    merchant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("merchants.merchant_id"), primary_key=True
    )
    pay_org_no: Mapped[str] = mapped_column(String(32), primary_key=True)
