"""gateway 0001: the schema of release 0.1 (before versioned migrations).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "gateway_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("chain", sa.String(length=300), nullable=False),
        sa.Column("head_sequence", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain"),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("chain", sa.String(length=300), nullable=False),
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("signer", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=200), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("chain", "sequence"),
    )
    op.create_table(
        "audit_record",
        sa.Column("chain", sa.String(length=300), nullable=False),
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=True),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=True),
        sa.Column("recipient_role", sa.String(length=100), nullable=True),
        sa.Column("local_authority", sa.String(length=200), nullable=True),
        sa.Column("notification_type", sa.String(length=200), nullable=True),
        sa.Column("child_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("lawful_basis", sa.String(length=200), nullable=True),
        sa.Column("consent", sa.String(length=100), nullable=True),
        sa.Column("no_consent_reason", sa.Text(), nullable=True),
        sa.Column("restrictions", sa.Text(), nullable=False),
        sa.Column("withheld", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decision_key", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", "sequence"),
        sa.UniqueConstraint("decision_key"),
    )
    op.create_index(
        op.f("ix_audit_record_local_authority"), "audit_record", ["local_authority"], unique=False
    )
    op.create_index(
        op.f("ix_audit_record_message_id"), "audit_record", ["message_id"], unique=False
    )
    op.create_index(
        op.f("ix_audit_record_notification_id"), "audit_record", ["notification_id"], unique=False
    )
    op.create_table(
        "gateway_allocation_messages",
        sa.Column("local_authority", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("local_authority", "message_id"),
    )
    op.create_table(
        "gateway_allocation_offsets",
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    op.create_table(
        "gateway_allocations",
        sa.Column("local_authority", sa.String(length=64), nullable=False),
        sa.Column("child_key", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("worker_name", sa.String(length=256), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("supervisor_id", sa.String(length=128), nullable=False),
        sa.Column("supervisor_name", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("local_authority", "child_key"),
    )
    op.create_table(
        "gateway_quarantine",
        sa.Column(
            "quarantine_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("sender_claimed", sa.String(length=200), nullable=True),
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
            "topic", "partition", "offset", "item", name="uq_gateway_quarantine_offset"
        ),
    )
    op.create_table(
        "judged_message",
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("type_label", sa.String(length=100), nullable=False),
        sa.Column("judged_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "message_id"),
    )
    op.create_table(
        "share_ledger",
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("sender_kind", sa.String(length=50), nullable=False),
        sa.Column("notification_type", sa.String(length=200), nullable=False),
        sa.Column("local_authority", sa.String(length=200), nullable=False),
        sa.Column("child_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("restrictions", sa.Text(), nullable=False),
        sa.Column("onward_consent", sa.Text(), nullable=False),
        sa.Column("recorded_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "local_authority"),
    )


def downgrade() -> None:
    op.drop_table("share_ledger")
    op.drop_table("judged_message")
    op.drop_table("gateway_quarantine")
    op.drop_table("gateway_allocations")
    op.drop_table("gateway_allocation_offsets")
    op.drop_table("gateway_allocation_messages")
    op.drop_index(op.f("ix_audit_record_notification_id"), table_name="audit_record")
    op.drop_index(op.f("ix_audit_record_message_id"), table_name="audit_record")
    op.drop_index(op.f("ix_audit_record_local_authority"), table_name="audit_record")
    op.drop_table("audit_record")
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_chain")
