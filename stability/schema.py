"""Tables of the stability package: dependency map, switches, audit log, breaker events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
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


class Resource(Base):
    """Anything the core calls: a channel, the ledger, Redis, the database, a service."""

    __tablename__ = "stability_resources"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64), default="")
    sla_target: Mapped[float] = mapped_column(Float, default=0.999)
    core_link: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(256), default="")


class Edge(Base):
    """``caller`` depends on ``callee``; graded strong (the link fails without it) or weak."""

    __tablename__ = "stability_edges"
    __table_args__ = (UniqueConstraint("caller", "callee"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(64), ForeignKey("stability_resources.name"))
    callee: Mapped[str] = mapped_column(String(64), ForeignKey("stability_resources.name"))
    grade: Mapped[str] = mapped_column(String(8))  # strong | weak
    timeout_ms: Mapped[int] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    fallback: Mapped[str] = mapped_column(String(128), default="")
    owner: Mapped[str] = mapped_column(String(64), default="")
    sla_target: Mapped[float] = mapped_column(Float, default=0.999)


#: the rows the one-live-switch-per-kind-and-target index covers
LIVE_SWITCH = "status IN ('pending', 'active')"


class Switch(Base):
    """One switch change: degrade, force a breaker, set a limit, dry-run a limit."""

    __tablename__ = "stability_switches"
    __table_args__ = (
        Index("ix_stability_switches_status", "status", "expires_at"),
        # one live (pending or active) switch per kind and target (migration 0010)
        Index(
            "uq_stability_switches_live",
            "kind",
            "target",
            unique=True,
            postgresql_where=text(LIVE_SWITCH),
            sqlite_where=text(LIVE_SWITCH),
        ),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128))
    params: Mapped[str] = mapped_column(Text, default="{}")
    reason: Mapped[str] = mapped_column(String(512))
    actor: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(
        String(24)
    )  # pending | active | expired | reverted | rejected
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditEntry(Base):
    """Append-only: who changed what, when, why, before and after."""

    __tablename__ = "stability_audit"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128))
    switch_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(String(512), default="")
    before: Mapped[str] = mapped_column(Text, default="null")
    after: Mapped[str] = mapped_column(Text, default="null")
    version: Mapped[int] = mapped_column(BigInteger)


class ConfigVersion(Base):
    """A single counter bumped by every switch change; processes poll or subscribe to it."""

    __tablename__ = "stability_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class BreakerEvent(Base):
    """Every breaker state change, from any process."""

    __tablename__ = "stability_breaker_events"
    __table_args__ = (Index("ix_stability_breaker_events_resource", "resource", "at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    resource: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(128), default="")
    node: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class BreakerStat(Base):
    """A breaker's current window in one process (``node``), published every few seconds
    by :class:`stability.breaker_stats.BreakerStatsPublisher` so the console, another
    process, can show failure and slow-call ratios (migration 0010)."""

    __tablename__ = "stability_breaker_stats"
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    calls: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    slow_calls: Mapped[int] = mapped_column(Integer)
    window_size: Mapped[int] = mapped_column(Integer)
    min_calls: Mapped[int] = mapped_column(Integer)
    failure_threshold: Mapped[float] = mapped_column(Float)
    slow_threshold: Mapped[float] = mapped_column(Float)
    slow_call_s: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
