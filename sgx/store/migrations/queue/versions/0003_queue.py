"""queue 0003: the consents the inbox asked of authors (inbox_consent).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0003"
down_revision = "queue_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_consent",
        sa.Column(
            "consent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("answered_by", sa.String(length=200), nullable=True),
        sa.Column("court_order", sa.Text(), nullable=True),
        sa.Column("still_blocked", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("consent_id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(
        "ix_inbox_consent_notification", "inbox_consent", ["notification_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_consent_notification", table_name="inbox_consent")
    op.drop_table("inbox_consent")
