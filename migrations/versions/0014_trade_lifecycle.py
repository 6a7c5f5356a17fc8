"""trades that end: merchant expiry and confirm hold, coupon fallback flag, four-eyes manual actions

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LIVE = "status = 'proposed'"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(
            sa.Column("trade_expiry_s", sa.Integer(), server_default="1800", nullable=False)
        )
        batch.add_column(
            sa.Column("confirm_hold_s", sa.Integer(), server_default="604800", nullable=False)
        )
        batch.add_column(
            # a constant default ('0' is false on both): an expression would make SQLite's
            # batch mode copy the table, which its foreign keys refuse once it has rows
            sa.Column("pay_without_coupon", sa.Boolean(), server_default="0", nullable=False)
        )
    op.create_table(
        "manual_actions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", _TS, nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", _TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_manual_actions"),
    )
    op.create_index(
        "ix_manual_actions_status_proposed", "manual_actions", ["status", "proposed_at"]
    )
    op.create_index(
        "uq_manual_actions_live",
        "manual_actions",
        ["item_id"],
        unique=True,
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_manual_actions_live", table_name="manual_actions")
    op.drop_index("ix_manual_actions_status_proposed", table_name="manual_actions")
    op.drop_table("manual_actions")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("pay_without_coupon")
        batch.drop_column("confirm_hold_s")
        batch.drop_column("trade_expiry_s")
