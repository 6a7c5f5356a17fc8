"""user balances scoped to the merchant that funds them

A user's accounts are owned by ``<merchant_id>:<user_id>``: merchant B naming merchant
A's user ``u1`` names its own ``u1``, another account. Existing user accounts move to
the merchant whose journal entries touched them; an account touched by several
merchants' entries (possible before this revision) keeps its old owner id, where no
merchant can name it any more: its balance waits for a human.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column(
            "owner_id",
            existing_type=sa.String(length=64),
            type_=sa.String(length=128),
            existing_nullable=False,
        )
    # each user account's merchant, when exactly one merchant's entries touched it
    op.execute(
        """
        UPDATE accounts SET owner_id = (
            SELECT MIN(e.merchant_id) || ':' || accounts.owner_id
            FROM journal_legs l JOIN journal_entries e ON e.id = l.entry_id
            WHERE l.account_id = accounts.id)
        WHERE owner_type = 'user'
          AND owner_id NOT LIKE '%:%'
          AND (SELECT COUNT(DISTINCT e.merchant_id)
               FROM journal_legs l JOIN journal_entries e ON e.id = l.entry_id
               WHERE l.account_id = accounts.id) = 1
        """
    )


def downgrade() -> None:
    after_colon = (
        "SUBSTR(owner_id, INSTR(owner_id, ':') + 1)"
        if op.get_bind().dialect.name == "sqlite"
        else "SPLIT_PART(owner_id, ':', 2)"
    )
    op.execute(
        f"UPDATE accounts SET owner_id = {after_colon} "
        "WHERE owner_type = 'user' AND owner_id LIKE '%:%'"
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column(
            "owner_id",
            existing_type=sa.String(length=128),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
