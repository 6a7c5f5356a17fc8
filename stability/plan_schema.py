"""Tables of switch plans (migration 0012): the reviewed plans, their runs, and the chart
annotations a run leaves. They join the stability package's metadata."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from collectors.dbtypes import AutoId, UTCDateTime

from .schema import Base

#: the runs the one-live-run-per-plan index covers
LIVE_RUN = "status IN ('pending', 'active')"


class Plan(Base):
    """A named plan of several steps; usable once a second person has reviewed it."""

    __tablename__ = "stability_plans"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(String(512), default="")
    steps: Mapped[str] = mapped_column(Text)  # JSON list of step dicts
    triggers: Mapped[str] = mapped_column(Text, default="[]")  # JSON: resources/alert rules
    author: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # draft | reviewed
    reviewed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PlanRun(Base):
    """One run of a plan: proposed, approved by a second person, applied step by step,
    reverted in one action. ``applied`` holds what each step did (what to undo)."""

    __tablename__ = "stability_plan_runs"
    __table_args__ = (
        Index(
            "uq_stability_plan_runs_live",
            "plan_name",
            unique=True,
            postgresql_where=text(LIVE_RUN),
            sqlite_where=text(LIVE_RUN),
        ),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    plan_name: Mapped[str] = mapped_column(String(128))
    steps: Mapped[str] = mapped_column(Text)  # the plan's steps when it was proposed
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(512))
    trigger: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(16))
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    applied: Mapped[str] = mapped_column(Text, default="[]")
    error: Mapped[str] = mapped_column(String(512), default="")


class Annotation(Base):
    """A mark on the charts: from ``at`` until ``ends_at`` (open while ``None``)."""

    __tablename__ = "stability_annotations"
    __table_args__ = (Index("ix_stability_annotations_at", "at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    text: Mapped[str] = mapped_column(String(256))
    actor: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
