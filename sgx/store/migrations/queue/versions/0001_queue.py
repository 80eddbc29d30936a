"""queue 0001: the schema of release 0.1 (before versioned migrations).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_quarantine",
        sa.Column(
            "quarantine_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("quarantined_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("quarantine_id"),
        sa.UniqueConstraint(
            "topic", "partition", "offset", "item", name="uq_consumer_quarantine_offset"
        ),
    )
    op.create_table(
        "queue_item",
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_id", sa.String(length=200), nullable=False),
        sa.Column("recipient_role", sa.String(length=100), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("route_reason", sa.String(length=100), nullable=False),
        sa.Column("notification_type", sa.String(length=200), nullable=False),
        sa.Column("urgency", sa.String(length=50), nullable=False),
        sa.Column("sender_agency", sa.String(length=200), nullable=False),
        sa.Column("authored_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("routed_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("restrictions", sa.Text(), nullable=False),
        sa.Column("withheld", sa.Text(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("source_offset", sa.String(length=300), nullable=False),
        sa.Column("queued_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("acked_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("item_id"),
        sa.UniqueConstraint("notification_id", "recipient_id", name="uq_queue_item_delivery"),
    )
    op.create_index(
        "ix_queue_item_recipient", "queue_item", ["recipient_id", "status", "item_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_queue_item_recipient", table_name="queue_item")
    op.drop_table("queue_item")
    op.drop_table("consumer_quarantine")
