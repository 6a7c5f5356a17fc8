"""merchant secrets: notification signing secrets, rotatable tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``merchant_api_tokens`` holds every API token's hash (rotation keeps two for a grace
period; revocation marks one); the tokens of existing merchants are copied from
``merchants.token_hash``, so they keep working. ``merchant_notify_secrets`` holds each
merchant's notification signing secret; existing merchants get none here (nobody could
tell them one): they stay on the platform's shared key until their first rotation.
"""

from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchant_api_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.merchant_id"],
            name=op.f("fk_merchant_api_tokens_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_merchant_api_tokens")),
    )
    with op.batch_alter_table("merchant_api_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_merchant_api_tokens_merchant", ["merchant_id"], unique=False)
    op.execute(
        "INSERT INTO merchant_api_tokens (token_hash, merchant_id, prefix, created_at) "
        "SELECT token_hash, merchant_id, token_prefix, created_at FROM merchants"
    )

    op.create_table(
        "merchant_notify_secrets",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.merchant_id"],
            name=op.f("fk_merchant_notify_secrets_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_notify_secrets")),
    )
    with op.batch_alter_table("merchant_notify_secrets", schema=None) as batch_op:
        batch_op.create_index("ix_merchant_notify_secrets_merchant", ["merchant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("merchant_notify_secrets", schema=None) as batch_op:
        batch_op.drop_index("ix_merchant_notify_secrets_merchant")
    op.drop_table("merchant_notify_secrets")
    with op.batch_alter_table("merchant_api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_merchant_api_tokens_merchant")
    op.drop_table("merchant_api_tokens")
