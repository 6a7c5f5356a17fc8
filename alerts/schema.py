"""Alert tables: current state per fingerprint, history, silences, notifications, acks.

Timestamps are epoch seconds (float): the alert engine's clock is injectable.
"""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from collectors.dbtypes import NAMING, AutoId


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata


class AlertState(Base):
    """The current state of one alert instance (rule + labels → fingerprint)."""

    __tablename__ = "alert_states"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule: Mapped[str] = mapped_column(String(128))
    labels: Mapped[str] = mapped_column(Text)  # canonical JSON
    annotations: Mapped[str] = mapped_column(Text, default="{}")
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # inactive | pending | firing | resolved
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    active_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    fired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_eval: Mapped[float] = mapped_column(Float)
    last_notified: Mapped[float | None] = mapped_column(Float, nullable=True)


class AlertHistory(Base):
    __tablename__ = "alert_history"
    __table_args__ = (Index("ix_alert_history_at", "at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(128))
    labels: Mapped[str] = mapped_column(Text)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[float] = mapped_column(Float)


class Silence(Base):
    """Suppresses notifications for matching alerts; creator, comment and end required."""

    __tablename__ = "alert_silences"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    matchers: Mapped[str] = mapped_column(Text)  # JSON {label: value}
    creator: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)


class AlertNotification(Base):
    """One notification (group of alerts) to one receiver, with its attempts."""

    __tablename__ = "alert_notifications"
    __table_args__ = (Index("ix_alert_notifications_at", "at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    receiver: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(256))
    fingerprints: Mapped[str] = mapped_column(Text)  # JSON list
    status: Mapped[str] = mapped_column(String(16))  # sent | failed | silenced
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str] = mapped_column(Text, default="{}")
    at: Mapped[float] = mapped_column(Float)


class AlertAck(Base):
    """Someone acknowledged a firing alert: it stays firing, humans are not paged again.

    An acknowledgement covers the firing episode it was made in (the alert's ``fired_at``
    when it was made; rows from before 0018 have none and cover while ``at >= fired_at``);
    when the alert resolves and fires again, it pages again. A withdrawn one (``withdrawn_*``
    set) covers nothing."""

    __tablename__ = "alert_acks"
    __table_args__ = (Index("ix_alert_acks_fingerprint", "fingerprint"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(128))
    creator: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)
    fired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    withdrawn_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    withdraw_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
