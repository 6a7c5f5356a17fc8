"""The console audit log: every console action, with actor, role, target and detail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .schema import ConsoleAudit


def record(
    engine: Engine,
    *,
    actor: str,
    role: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Write one audit row; returns its id."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.insert(ConsoleAudit)
            .values(
                actor=actor,
                role=role,
                action=action,
                target=target[:128],
                detail=json.dumps(detail or {}, default=str, sort_keys=True),
                at=at or datetime.now(UTC),
            )
            .returning(ConsoleAudit.id)
        )
        return int(result.scalar_one())


def recent(
    engine: Engine, limit: int = 200, *, actor: str | None = None, action: str | None = None
) -> list[dict[str, Any]]:
    """The newest audit rows first."""
    q = sa.select(ConsoleAudit.__table__).order_by(ConsoleAudit.id.desc()).limit(limit)
    if actor:
        q = q.where(ConsoleAudit.actor == actor)
    if action:
        q = q.where(ConsoleAudit.action == action)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return [
        {
            "id": r.id,
            "at": r.at,
            "actor": r.actor,
            "role": r.role,
            "action": r.action,
            "target": r.target,
            "detail": json.loads(r.detail),
        }
        for r in rows
    ]
