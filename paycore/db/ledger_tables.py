"""The ledger: subjects, accounts, journal entries and legs, hot accounts' pending postings."""

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
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Money, Ts


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
