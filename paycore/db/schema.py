"""SQLAlchemy 2 models of the pay core. Every pay table carries its shard key.

Money columns are ``BigInteger`` minor units. Ids are Snowflake ids assigned by the
application (see :mod:`paycore.ids`), so rows can be created without a round trip
and sharded by merchant or user later (Citus distributes on those columns).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from collectors.dbtypes import NAMING, AutoId, UTCDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata
Money = BigInteger


Ts = UTCDateTime()


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


class LedgerSubject(Base):
    """An accounting subject (chart of accounts line)."""

    __tablename__ = "ledger_subjects"
    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    normal_side: Mapped[str] = mapped_column(String(6))


class Account(Base):
    """A ledger account; ``balance`` is on the subject's normal side."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("owner_type", "owner_id", "subject_code", "currency", "sub_index"),
        CheckConstraint("allow_negative OR balance >= 0", name="non_negative"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    owner_type: Mapped[str] = mapped_column(String(16))
    #: users: ``<merchant_id>:<user_id>`` (a user's money belongs to its merchant)
    owner_id: Mapped[str] = mapped_column(String(128))
    subject_code: Mapped[str] = mapped_column(String(8), ForeignKey("ledger_subjects.code"))
    currency: Mapped[str] = mapped_column(String(3))
    sub_index: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hot_mode: Mapped[str] = mapped_column(String(16), default="none")
    sub_count: Mapped[int] = mapped_column(Integer, default=0)
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    balance: Mapped[int] = mapped_column(Money, default=0)
    created_at: Mapped[datetime] = mapped_column(Ts)


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (UniqueConstraint("biz_type", "biz_key"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    biz_type: Mapped[str] = mapped_column(String(32))
    biz_key: Mapped[str] = mapped_column(String(96))
    currency: Mapped[str] = mapped_column(String(3))
    merchant_id: Mapped[str] = mapped_column(String(32))
    order_type: Mapped[str] = mapped_column(String(32))
    sub_type: Mapped[str] = mapped_column(String(32))
    pay_org_no: Mapped[str] = mapped_column(String(32))
    trade_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    memo: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(Ts)


class JournalLeg(Base):
    """One leg of an entry: ``amount`` is signed, debit positive, credit negative."""

    __tablename__ = "journal_legs"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_journal_legs_account", "account_id"),
        Index("ix_journal_legs_entry", "entry_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("journal_entries.id"))
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))


class PendingPosting(Base):
    """A buffered balance change of a hot account, applied later by summary posting.

    The leg itself is already in the journal (so every entry balances at once); only
    the account's balance row is updated in batches, which is what keeps a hot
    account from serialising the pay link.
    """

    __tablename__ = "pending_postings"
    __table_args__ = (
        Index(
            "ix_pending_postings_open",
            "id",
            postgresql_where=text("summary_id IS NULL"),
            sqlite_where=text("summary_id IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    leg_id: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[int] = mapped_column(Money)
    summary_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Ts)


class CompensationTask(Base):
    """A generic retryable task: claimed with a lease, retried on system failures only."""

    __tablename__ = "compensation_tasks"
    __table_args__ = (
        UniqueConstraint("kind", "biz_key"),
        Index("ix_compensation_tasks_due", "status", "next_run_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    biz_key: Mapped[str] = mapped_column(String(96))
    merchant_id: Mapped[str] = mapped_column(String(32), default="")
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16))  # pending|running|done|failed|manual
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    next_run_at: Mapped[datetime] = mapped_column(Ts)
    lease_until: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Ts)
    updated_at: Mapped[datetime] = mapped_column(Ts)


class Notification(Base):
    """Merchant notification outbox, written in the same transaction as the state change."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(32))
    trade_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))  # pending|delivered|gave_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Ts)
    lease_until: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Ts)
    delivered_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)


class NotificationAttempt(Base):
    __tablename__ = "notification_attempts"
    __table_args__ = (Index("ix_notification_attempts_notification", "notification_id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    notification_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(Ts)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class ReconRun(Base):
    """One reconciliation run; external runs are unique per pay org and day (resumable)."""

    __tablename__ = "recon_runs"
    __table_args__ = (UniqueConstraint("kind", "pay_org_no", "day"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # internal | external
    pay_org_no: Mapped[str] = mapped_column(String(32))
    day: Mapped[str] = mapped_column(String(32))  # YYYY-MM-DD, or the window start
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[str] = mapped_column(Text, default="{}")
    started_at: Mapped[datetime] = mapped_column(Ts)
    finished_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)


class ReconDifference(Base):
    """One difference found by reconciliation, with its resolution path."""

    __tablename__ = "recon_differences"
    __table_args__ = (UniqueConstraint("kind", "pay_org_no", "day", "ref"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    run_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    pay_org_no: Mapped[str] = mapped_column(String(32))
    day: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(64))  # channel txn no, or our id
    our_amount: Mapped[int | None] = mapped_column(Money, nullable=True)
    channel_amount: Mapped[int | None] = mapped_column(Money, nullable=True)
    our_status: Mapped[str] = mapped_column(String(16), default="")
    channel_status: Mapped[str] = mapped_column(String(16), default="")
    resolution: Mapped[str] = mapped_column(String(16))  # compensation | manual | expected
    status: Mapped[str] = mapped_column(String(16), default="open")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Ts)


class JobLease(Base):
    """Singleton jobs: one holder at a time across all workers, until the lease ends."""

    __tablename__ = "job_leases"
    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(Ts)
