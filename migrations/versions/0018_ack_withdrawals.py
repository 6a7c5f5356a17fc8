"""acknowledgements: the firing episode they cover, and their withdrawal

``fired_at`` is the alert's ``fired_at`` when it was acknowledged: the acknowledgement
covers that episode only, whatever the clock of the console or shell that made it
(rows made before this revision keep null and cover while ``at >= fired_at``).
``withdrawn_at``/``withdrawn_by``/``withdraw_comment``: who took it back, when and why.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa


revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_acks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fired_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("withdrawn_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("withdrawn_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("withdraw_comment", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_acks", schema=None) as batch_op:
        batch_op.drop_column("withdraw_comment")
        batch_op.drop_column("withdrawn_by")
        batch_op.drop_column("withdrawn_at")
        batch_op.drop_column("fired_at")
