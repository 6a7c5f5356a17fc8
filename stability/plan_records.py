"""What a plan and a plan run are (records read from their tables), their statuses, and
the audit entries plan changes write to the stability audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import AuditEntry, ConfigVersion

DRAFT, REVIEWED = "draft", "reviewed"
PENDING, ACTIVE, REVERTED, REJECTED, EXPIRED, FAILED = (
    "pending",
    "active",
    "reverted",
    "rejected",
    "expired",
    "failed",
)
#: the proposer of runs the platform opens itself (a breaker opened, an alert fired)
SYSTEM = "system"


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class PlanRecord:
    """A stored plan: runnable once ``status`` is ``reviewed`` (by someone not its author)."""

    id: int
    name: str
    description: str
    steps: list[dict[str, Any]]
    triggers: list[str]
    author: str
    status: str
    reviewed_by: str | None
    created_at: datetime
    reviewed_at: datetime | None


@dataclass(frozen=True)
class PlanRunRecord:
    """One run of a plan; ``applied[i]`` says what step ``i`` did (what its revert undoes)."""

    id: int
    plan: str
    steps: list[dict[str, Any]]
    actor: str
    reason: str
    trigger: str
    status: str
    approved_by: str | None
    created_at: datetime
    expires_at: datetime
    applied_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None
    applied: list[dict[str, Any]]
    error: str

    def in_force(self, now: datetime) -> bool:
        return self.status == ACTIVE and self.expires_at > now


def plan_of(r: Any) -> PlanRecord:
    return PlanRecord(
        int(r.id),
        r.name,
        r.description,
        json.loads(r.steps),
        json.loads(r.triggers),
        r.author,
        r.status,
        r.reviewed_by,
        _aware(r.created_at),  # type: ignore[arg-type]
        _aware(r.reviewed_at),
    )


def run_of(r: Any) -> PlanRunRecord:
    return PlanRunRecord(
        int(r.id),
        r.plan_name,
        json.loads(r.steps),
        r.actor,
        r.reason,
        r.trigger,
        r.status,
        r.approved_by,
        _aware(r.created_at),  # type: ignore[arg-type]
        _aware(r.expires_at),  # type: ignore[arg-type]
        _aware(r.applied_at),
        _aware(r.ended_at),
        r.ended_by,
        json.loads(r.applied),
        r.error,
    )


def audit(
    conn: Connection,
    actor: str,
    action: str,
    target: str,
    reason: str,
    before: Any,
    after: Any,
    now: datetime,
) -> None:
    """One stability audit entry (``plan_*`` actions), bumping the config version as every
    switch change does: ``after`` carries the run id."""
    conn.execute(
        sa.update(ConfigVersion)
        .where(ConfigVersion.id == 1)
        .values(version=ConfigVersion.version + 1)
    )
    version = conn.execute(
        sa.select(ConfigVersion.version).where(ConfigVersion.id == 1)
    ).scalar_one()
    conn.execute(
        sa.insert(AuditEntry).values(
            at=now,
            actor=actor[:64],
            action=action[:32],
            target=target[:128],
            switch_id=None,
            reason=reason[:512],
            before=json.dumps(before, default=str),
            after=json.dumps(after, default=str),
            version=version,
        )
    )


def note(
    conn: Connection,
    run: PlanRunRecord,
    actor: str,
    action: str,
    reason: str,
    status: tuple[str | None, str],
    now: datetime,
    **extra: Any,
) -> None:
    """Audit a change of ``run`` from ``status[0]`` to ``status[1]``."""
    before = None if status[0] is None else {"run_id": run.id, "status": status[0]}
    after = {"run_id": run.id, "status": status[1], **extra}
    audit(conn, actor, action, run.plan, reason, before, after, now)
