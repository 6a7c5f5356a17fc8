"""drill reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drill_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_factor", sa.Float(), nullable=False),
        sa.Column("payments_sent", sa.Integer(), nullable=False),
        sa.Column("payments_paid", sa.Integer(), nullable=False),
        sa.Column("payments_failed", sa.Integer(), nullable=False),
        sa.Column("lost", sa.Integer(), nullable=False),
        sa.Column("doubled", sa.Integer(), nullable=False),
        sa.Column("alerts_fired", sa.Integer(), nullable=False),
        sa.Column("breakers_opened", sa.Integer(), nullable=False),
        sa.Column("trial_balance_ok", sa.Boolean(), nullable=True),
        sa.Column("recon_differences", sa.Integer(), nullable=True),
        sa.Column("json_path", sa.String(length=512), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_reports")),
    )
    with op.batch_alter_table("drill_reports", schema=None) as batch_op:
        batch_op.create_index("ix_drill_reports_started_at", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("drill_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_drill_reports_started_at")
    op.drop_table("drill_reports")
