"""The drill reports table: one row per drill run, the whole report as JSON beside the
headline figures the console lists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from collectors.dbtypes import NAMING, AutoId, UTCDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata


class DrillReportRow(Base):
    """One drill run: what was injected, what the platform did, what it cost."""

    __tablename__ = "drill_reports"
    __table_args__ = (Index("ix_drill_reports_started_at", "started_at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # passed | failed | not_applicable
    target: Mapped[str] = mapped_column(String(64), default="")  # pay org or backend
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    time_factor: Mapped[float] = mapped_column(Float, default=1.0)
    payments_sent: Mapped[int] = mapped_column(Integer, default=0)
    payments_paid: Mapped[int] = mapped_column(Integer, default=0)
    payments_failed: Mapped[int] = mapped_column(Integer, default=0)
    lost: Mapped[int] = mapped_column(Integer, default=0)
    doubled: Mapped[int] = mapped_column(Integer, default=0)
    alerts_fired: Mapped[int] = mapped_column(Integer, default=0)
    breakers_opened: Mapped[int] = mapped_column(Integer, default=0)
    trial_balance_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    recon_differences: Mapped[int | None] = mapped_column(Integer, nullable=True)
    json_path: Mapped[str] = mapped_column(String(512), default="")
    report: Mapped[str] = mapped_column(Text, default="{}")  # JSON
