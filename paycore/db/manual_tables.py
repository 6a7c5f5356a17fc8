"""Four-eyes actions on manual pay items: proposed by one person, approved by another."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from collectors.dbtypes import AutoId

from .base import Base, Ts

#: at most one proposal waits per pay item
LIVE_ACTION = "status = 'proposed'"


class ManualAction(Base):
    """A proposed settlement of a manual pay item (``settle_success`` or ``fail_refund``).

    ``status``: ``proposed`` until a second person approves (``applied``, with the
    settlement's ``outcome``) or someone rejects it (``rejected``).
    """

    __tablename__ = "manual_actions"
    __table_args__ = (
        Index("ix_manual_actions_status_proposed", "status", "proposed_at"),
        Index(
            "uq_manual_actions_live",
            "item_id",
            unique=True,
            postgresql_where=text(LIVE_ACTION),
            sqlite_where=text(LIVE_ACTION),
        ),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(512))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column(Ts)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
