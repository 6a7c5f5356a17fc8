"""Background work: compensation tasks, the notification outbox, reconciliation runs and
differences, singleton job leases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Money, Ts


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
