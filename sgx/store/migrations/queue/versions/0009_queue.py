"""queue 0009: the MASH's network checks kept by the LA's consumer, not read from the
receipts topic on every look-up: the gateway's word on each information request
(information_status) and the queue item answering it (information_answer), both by
request id (:mod:`consumers.information_rows`)."""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0009"
down_revision = "queue_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "information_status",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("rating", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("deadline", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("identifiers_sent", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source_offset", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_table(
        "information_answer",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_id", sa.String(length=200), nullable=False),
        sa.Column("source_offset", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )


def downgrade() -> None:
    op.drop_table("information_answer")
    op.drop_table("information_status")
