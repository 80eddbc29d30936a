"""queue 0010: the gateway's answers on the LA's receipts topic kept by the LA's consumer,
not read from that topic's beginning on every look-up: share decisions and consent
outcomes by request (gateway_answer), receipts by the message receipted
(gateway_receipt) (:mod:`consumers.answer_rows`). Nothing to copy: the consumer's group
has no offset on the receipts topic yet, so it reads the topic once from its start and
fills both tables with what the LA was already told."""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0010"
down_revision = "queue_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_answer",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("source_offset", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "kind", "state"),
    )
    op.create_table(
        "gateway_receipt",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=30), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source_offset", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )


def downgrade() -> None:
    op.drop_table("gateway_receipt")
    op.drop_table("gateway_answer")
