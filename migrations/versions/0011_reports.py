"""reports: what the SLA and fund reports need

Rollup buckets carry the exact counter increase of their samples (``inc``), so counts
over long windows are sums of whole-bucket increases instead of guesses from each
bucket's last/min/max. Buckets folded before this revision keep ``inc`` NULL and are
read the old way.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("metric_rollup_1m", "metric_rollup_1h")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("inc", sa.Float(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("inc")
