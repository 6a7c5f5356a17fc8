"""Routing rules as data: one row per published version of the whole rule set."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Ts


class RoutingRuleSet(Base):
    """A published rule set. Versions count up from 1 and are never changed: the
    current rules are the highest version; a publish inserts ``current + 1`` (two
    publishes of one version: the primary key refuses the second)."""

    __tablename__ = "routing_rule_sets"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[str] = mapped_column(Text)  # JSON list of rule objects
    author: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(Ts)
