"""outbox 0001: the schema of release 0.1 (before versioned migrations).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "outbox_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_entry",
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("schema_name", sa.String(length=200), nullable=False),
        sa.Column("kafka_key", sa.LargeBinary(), nullable=False),
        sa.Column("plaintext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("receipt_outcome", sa.String(length=12), nullable=True),
        sa.Column("receipt_reason", sa.String(length=100), nullable=True),
        sa.Column("receipt_detail", sa.Text(), nullable=True),
        sa.Column("receipt_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("entry_id"),
        sa.UniqueConstraint("agency", "message_id", name="uq_outbox_entry_message"),
    )
    op.create_index(
        "ix_outbox_entry_status", "outbox_entry", ["agency", "status", "entry_id"], unique=False
    )
    op.create_table(
        "outbox_receipt_quarantine",
        sa.Column(
            "quarantine_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("agency", sa.String(length=200), nullable=False),
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
            "topic", "partition", "offset", "item", name="uq_outbox_receipt_offset"
        ),
    )


def downgrade() -> None:
    op.drop_table("outbox_receipt_quarantine")
    op.drop_index("ix_outbox_entry_status", table_name="outbox_entry")
    op.drop_table("outbox_entry")
