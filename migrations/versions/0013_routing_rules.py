"""routing rules as data: versioned rule sets (one row per published version)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "routing_rule_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_routing_rule_sets"),
    )


def downgrade() -> None:
    op.drop_table("routing_rule_sets")
