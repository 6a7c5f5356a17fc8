"""Trades, pay orders and their items, pay exceptions, and the risk lists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from collectors.dbtypes import AutoId

from .base import Base, Money, Ts


class Trade(Base):
    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("merchant_id", "out_trade_no"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= paid_amount", name="refund_le_paid"
        ),
        Index("ix_trades_status_updated", "status", "updated_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.merchant_id"))
    out_trade_no: Mapped[str] = mapped_column(String(64))
    trade_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    paid_amount: Mapped[int] = mapped_column(Money, default=0)
    refunded_amount: Mapped[int] = mapped_column(Money, default=0)
    user_id: Mapped[str] = mapped_column(String(64))
    payee_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    order_type: Mapped[str] = mapped_column(String(32))
    sub_type: Mapped[str] = mapped_column(String(32))
    pay_org_no: Mapped[str] = mapped_column(String(32))
    origin_trade_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("trades.id"))
    root_trade_id: Mapped[int] = mapped_column(BigInteger)
    request_hash: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(Ts)
    updated_at: Mapped[datetime] = mapped_column(Ts)


class PayOrder(Base):
    __tablename__ = "pay_orders"
    __table_args__ = (
        UniqueConstraint("merchant_id", "out_pay_no"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_pay_orders_trade", "trade_id"),
        Index("ix_pay_orders_status_created", "status", "created_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    trade_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("trades.id"))
    merchant_id: Mapped[str] = mapped_column(String(32))
    out_pay_no: Mapped[str] = mapped_column(String(64))
    pay_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    user_id: Mapped[str] = mapped_column(String(64))
    order_type: Mapped[str] = mapped_column(String(32))
    sub_type: Mapped[str] = mapped_column(String(32))
    pay_org_no: Mapped[str] = mapped_column(String(32))
    origin_pay_order_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(Ts)
    finished_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    #: weak tools the pay went on without, comma-separated (migration 0019: last column)
    skipped_tools: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PayItem(Base):
    """One pay tool's part of a pay order (balance, channel, ...)."""

    __tablename__ = "pay_items"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refund_le_amount"
        ),
        Index("ix_pay_items_order", "pay_order_id"),
        UniqueConstraint("pay_org_no", "channel_txn_no"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    pay_order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pay_orders.id"))
    merchant_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    tool: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Money)
    refunded_amount: Mapped[int] = mapped_column(Money, default=0)
    origin_item_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pay_org_no: Mapped[str | None] = mapped_column(String(32), nullable=True)
    channel_txn_no: Mapped[str | None] = mapped_column(String(64), nullable=True)
    settled_amount: Mapped[int | None] = mapped_column(Money, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Ts)
    finished_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    #: active query of a stuck channel call: attempts so far and when to ask next
    query_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_query_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # last: migration 0015 added it to the end of the table
    #: what the tool paid with (a coupon code), as the pay request named it
    tool_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PayException(Base):
    """A classified pay exception, resolved by a full refund of what was taken."""

    __tablename__ = "pay_exceptions"
    __table_args__ = (UniqueConstraint("kind", "biz_key"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    biz_key: Mapped[str] = mapped_column(String(96))
    merchant_id: Mapped[str] = mapped_column(String(32))
    trade_id: Mapped[int] = mapped_column(BigInteger)
    pay_order_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pay_item_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount_taken: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    resolution: Mapped[str] = mapped_column(String(32), default="full_refund")
    status: Mapped[str] = mapped_column(String(16), default="open")
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Ts)


class RiskBlock(Base):
    """A blocklist entry: the user may not pay at this merchant (``merchant_id`` ``*``:
    at any merchant, a platform decision)."""

    __tablename__ = "risk_blocklist"
    merchant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(256))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Ts)


class RiskReview(Base):
    """A payment the risk check let through unchecked (its fallback), kept for review."""

    __tablename__ = "risk_reviews"
    __table_args__ = (
        Index("ix_risk_reviews_status_created", "status", "created_at"),
        Index("ix_risk_reviews_merchant_created", "merchant_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    trade_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | reviewed
    created_at: Mapped[datetime] = mapped_column(Ts)
    reviewed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
