"""pay orders: the weak tools the pay went on without

``skipped_tools``: comma-separated tool names (a coupon whose service was down, with the
merchant allowing it) whose amount another part took; null when none. Stored so that the
trade's reads and a replayed pay answer what the pay itself answered.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa


revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pay_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skipped_tools", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pay_orders", schema=None) as batch_op:
        batch_op.drop_column("skipped_tools")
