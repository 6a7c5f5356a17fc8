"""Time-series tables: raw samples and 1-minute / 1-hour rollups.

Timestamps are epoch seconds (float) so time is trivially injectable in tests and
arithmetic on windows is cheap. ``labels`` is canonical JSON (sorted keys).
"""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .dbtypes import NAMING, AutoId


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata


class MetricSample(Base):
    """One sampled value of one series (counters are cumulative, as exposed)."""

    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_name_ts", "name", "ts"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(128))
    labels: Mapped[str] = mapped_column(String(512))
    value: Mapped[float] = mapped_column(Float)


class _Rollup:
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    bucket: Mapped[float] = mapped_column(Float)  # start of the bucket, epoch seconds
    name: Mapped[str] = mapped_column(String(128))
    labels: Mapped[str] = mapped_column(String(512))
    last: Mapped[float] = mapped_column(Float)  # counters: the cumulative value at bucket end
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    sum: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    #: counters: the exact increase of the samples in the bucket, each against the sample
    #: before it (resets handled); NULL for buckets folded before migration 0011
    inc: Mapped[float | None] = mapped_column(Float, nullable=True)


class Rollup1m(_Rollup, Base):
    __tablename__ = "metric_rollup_1m"
    __table_args__ = (
        UniqueConstraint("name", "labels", "bucket"),
        Index("ix_metric_rollup_1m_name_bucket", "name", "bucket"),
    )


class Rollup1h(_Rollup, Base):
    __tablename__ = "metric_rollup_1h"
    __table_args__ = (
        UniqueConstraint("name", "labels", "bucket"),
        Index("ix_metric_rollup_1h_name_bucket", "name", "bucket"),
    )
