"""switches: one active switch per kind and target

A partial unique index keeps one live (pending or active) switch per kind and target:
before it, one switch applied twice left its target degraded after one revert. Live
duplicates already stored are ended first (the active one, newest first, is kept; the
others are marked reverted, audited and the switch version bumped, so every process
rebuilds its snapshot). Also the breaker statistics table the console reads.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import json
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LIVE = "status IN ('pending', 'active')"


_TS = sa.DateTime(timezone=True)
_switches = sa.table(
    "stability_switches",
    sa.column("id", sa.BigInteger),
    sa.column("kind", sa.String),
    sa.column("target", sa.String),
    sa.column("status", sa.String),
    sa.column("ended_at", _TS),
)
_version = sa.table(
    "stability_version", sa.column("id", sa.Integer), sa.column("version", sa.BigInteger)
)
_audit = sa.table(
    "stability_audit",
    sa.column("at", _TS),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("target", sa.String),
    sa.column("switch_id", sa.BigInteger),
    sa.column("reason", sa.String),
    sa.column("before", sa.Text),
    sa.column("after", sa.Text),
    sa.column("version", sa.BigInteger),
)


def _end_duplicates() -> None:
    """End all but one live switch of each kind and target (keep the newest active)."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_switches.c.id, _switches.c.kind, _switches.c.target, _switches.c.status)
        .where(_switches.c.status.in_(("pending", "active")))
        .order_by(_switches.c.id)
    ).all()
    groups: dict[tuple[str, str], list] = {}
    for row in rows:
        groups.setdefault((row.kind, row.target), []).append(row)
    now = datetime.now(UTC)
    for (_kind, target), live in groups.items():
        keep = max(live, key=lambda r: (r.status == "active", r.id))
        for row in live:
            if row.id == keep.id:
                continue
            conn.execute(
                sa.update(_switches)
                .where(_switches.c.id == row.id)
                .values(status="reverted", ended_at=now)
            )
            conn.execute(
                sa.update(_version).where(_version.c.id == 1).values(version=_version.c.version + 1)
            )
            version = conn.execute(sa.select(_version.c.version).where(_version.c.id == 1)).scalar()
            conn.execute(
                sa.insert(_audit).values(
                    at=now,
                    actor="system",
                    action="reverted",
                    target=target,
                    switch_id=row.id,
                    reason=f"duplicate of #{keep.id}: one live switch per kind and target",
                    before=json.dumps({"status": row.status}),
                    after=json.dumps({"status": "reverted"}),
                    version=version or 0,
                )
            )


def upgrade() -> None:
    _end_duplicates()
    with op.batch_alter_table("stability_switches", schema=None) as batch_op:
        batch_op.create_index(
            "uq_stability_switches_live",
            ["kind", "target"],
            unique=True,
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
    op.create_table(
        "stability_breaker_stats",
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("slow_calls", sa.Integer(), nullable=False),
        sa.Column("window_size", sa.Integer(), nullable=False),
        sa.Column("min_calls", sa.Integer(), nullable=False),
        sa.Column("failure_threshold", sa.Float(), nullable=False),
        sa.Column("slow_threshold", sa.Float(), nullable=False),
        sa.Column("slow_call_s", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource", "node", name=op.f("pk_stability_breaker_stats")),
    )


def downgrade() -> None:
    op.drop_table("stability_breaker_stats")
    with op.batch_alter_table("stability_switches", schema=None) as batch_op:
        batch_op.drop_index("uq_stability_switches_live")
