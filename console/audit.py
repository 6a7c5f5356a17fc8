"""The console audit log: every console action, with actor, role, target and detail.

A row's ``detail`` may carry an ``_admin`` part (e.g. why a sign-in was refused: an
unknown name or a wrong password) that only admins see: :func:`recent` leaves it out
unless asked with ``admin=True``, so an operator's audit view cannot tell which user
names exist.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .schema import ConsoleAudit

#: the key of a detail's admin-only part
ADMIN_ONLY = "_admin"


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
    """Write one audit row; returns its id. Over-long names are cut to the column's size
    (an OIDC e-mail may be longer than 64 characters)."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.insert(ConsoleAudit)
            .values(
                actor=(actor or "-")[:64],
                role=(role or "-")[:16],
                action=action[:64],
                target=target[:128],
                detail=json.dumps(detail or {}, default=str, sort_keys=True),
                at=at or datetime.now(UTC),
            )
            .returning(ConsoleAudit.id)
        )
        return int(result.scalar_one())


def recent(
    engine: Engine,
    limit: int = 200,
    *,
    actor: str | None = None,
    action: str | None = None,
    actions: tuple[str, ...] | None = None,
    admin: bool = False,
) -> list[dict[str, Any]]:
    """The newest audit rows first; without ``admin`` the admin-only detail is left out."""
    q = sa.select(ConsoleAudit.__table__).order_by(ConsoleAudit.id.desc()).limit(limit)
    if actor:
        q = q.where(ConsoleAudit.actor == actor)
    if action:
        q = q.where(ConsoleAudit.action == action)
    if actions:
        q = q.where(ConsoleAudit.action.in_(actions))
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
            "detail": _detail(r.detail, admin),
        }
        for r in rows
    ]


def _detail(text: str, admin: bool) -> Any:
    detail = json.loads(text)
    if not admin and isinstance(detail, dict):
        detail.pop(ADMIN_ONLY, None)
    return detail
