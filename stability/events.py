"""Persisting breaker state changes, from every process, for the console and drills."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .schema import BreakerEvent

log = logging.getLogger(__name__)


class BreakerEventLog:
    """A guard recorder that writes every breaker transition to the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.node = f"{socket.gethostname()}:{os.getpid()}"

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        return None

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(BreakerEvent).values(
                        resource=resource,
                        from_state=old,
                        to_state=new,
                        reason=reason[:128],
                        node=self.node,
                        at=datetime.now(UTC),
                    )
                )
        except sa_exc.SQLAlchemyError:
            log.warning("could not record breaker change %s %s->%s", resource, old, new)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(BreakerEvent).order_by(BreakerEvent.id.desc()).limit(limit)
            ).all()
        return [
            {
                "resource": r.resource,
                "from": r.from_state,
                "to": r.to_state,
                "reason": r.reason,
                "node": r.node,
                "at": r.at,
            }
            for r in rows
        ]
