"""pay tools as plug-ins: a part's reference (coupon code) on pay items; the ledger
subjects of points and coupons

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SUBJECTS = [
    ("2005", "user points", "liability", "credit"),
    ("6601", "points issued", "expense", "debit"),
    ("6602", "coupon funding", "expense", "debit"),
]

_subjects = sa.table(
    "ledger_subjects",
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("normal_side", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("pay_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tool_ref", sa.String(length=64), nullable=True))
    op.bulk_insert(
        _subjects, [dict(zip(("code", "name", "kind", "normal_side"), r)) for r in SUBJECTS]
    )


def downgrade() -> None:
    op.execute(_subjects.delete().where(_subjects.c.code.in_([code for code, *_ in SUBJECTS])))
    with op.batch_alter_table("pay_items", schema=None) as batch_op:
        batch_op.drop_column("tool_ref")
