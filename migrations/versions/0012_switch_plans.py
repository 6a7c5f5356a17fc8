"""switch plans: reviewed plans of several switch steps, their runs, chart annotations

A plan is named, has an author and a second person's review before it can run; a run is
approved by a second person, applied step by step and reverted in one action (one live
run per plan: a partial unique index, as for switches). Annotations mark the charts
while a run is in force.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LIVE = "status IN ('pending', 'active')"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stability_plans",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("triggers", sa.Text(), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("reviewed_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stability_plans"),
        sa.UniqueConstraint("name", name="uq_stability_plans_name"),
    )
    op.create_table(
        "stability_plan_runs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("plan_name", sa.String(128), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("trigger", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("applied_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("ended_by", sa.String(64), nullable=True),
        sa.Column("applied", sa.Text(), nullable=False),
        sa.Column("error", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stability_plan_runs"),
    )
    op.create_index(
        "uq_stability_plan_runs_live",
        "stability_plan_runs",
        ["plan_name"],
        unique=True,
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )
    op.create_table(
        "stability_annotations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=True),
        sa.Column("text", sa.String(256), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stability_annotations"),
    )
    op.create_index("ix_stability_annotations_at", "stability_annotations", ["at"])


def downgrade() -> None:
    op.drop_index("ix_stability_annotations_at", table_name="stability_annotations")
    op.drop_table("stability_annotations")
    op.drop_index("uq_stability_plan_runs_live", table_name="stability_plan_runs")
    op.drop_table("stability_plan_runs")
    op.drop_table("stability_plans")
