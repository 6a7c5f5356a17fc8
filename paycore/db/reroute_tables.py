"""Reroutes: a routed pay item moved to its next pay org after the first one refused it
before taking money (:mod:`paycore.pay_reroute`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Ts


class PayItemReroute(Base):
    """One pay item's move from ``from_org`` (transaction ``from_txn``) to ``to_org``
    (``to_txn``). At most one per item (a pay is retried once); ``(from_org, from_txn)``
    finds the item when the first org answers after all."""

    __tablename__ = "pay_item_reroutes"
    __table_args__ = (
        UniqueConstraint("item_id"),
        UniqueConstraint("from_org", "from_txn"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    item_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pay_items.id"))
    pay_order_id: Mapped[int] = mapped_column(BigInteger)
    merchant_id: Mapped[str] = mapped_column(String(32))  # the shard key, as on pay_items
    from_org: Mapped[str] = mapped_column(String(32))
    from_txn: Mapped[str] = mapped_column(String(64))
    to_org: Mapped[str] = mapped_column(String(32))
    to_txn: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Ts)
