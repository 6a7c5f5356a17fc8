"""reroutes: a routed pay item moved to the next org after a refusal before money

One row per rerouted pay item (a pay is retried once: unique ``item_id``); the old
``(from_org, from_txn)`` is unique too, so a late answer from the first org finds its
item.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pay_item_reroutes",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("pay_order_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("from_org", sa.String(length=32), nullable=False),
        sa.Column("from_txn", sa.String(length=64), nullable=False),
        sa.Column("to_org", sa.String(length=32), nullable=False),
        sa.Column("to_txn", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["pay_items.id"], name=op.f("fk_pay_item_reroutes_item_id_pay_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pay_item_reroutes")),
        sa.UniqueConstraint("item_id", name=op.f("uq_pay_item_reroutes_item_id")),
        sa.UniqueConstraint("from_org", "from_txn", name=op.f("uq_pay_item_reroutes_from_org")),
    )


def downgrade() -> None:
    op.drop_table("pay_item_reroutes")
