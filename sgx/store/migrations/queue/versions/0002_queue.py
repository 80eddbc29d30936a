"""queue 0002: the inbox (accounts, clients, read audit, shares), learned schemas, the replay log.

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0002"
down_revision = "queue_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_account",
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=50), nullable=True),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("created_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "inbox_client",
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "inbox_read",
        sa.Column("read_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("reader", sa.String(length=200), nullable=False),
        sa.Column("reader_kind", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("read_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("read_id"),
    )
    op.create_index("ix_inbox_read_item", "inbox_read", ["item_id"], unique=False)
    op.create_table(
        "inbox_share",
        sa.Column("share_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("to_id", sa.String(length=200), nullable=False),
        sa.Column("to_category", sa.String(length=50), nullable=False),
        sa.Column("to_name", sa.String(length=300), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("requested_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=True),
        sa.Column("broken", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("share_id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index("ix_inbox_share_notification", "inbox_share", ["notification_id"], unique=False)
    op.create_table(
        "known_schema",
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("learned_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    op.create_table(
        "consumer_quarantine_replay",
        sa.Column(
            "replay_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("quarantine_id", sa.Integer(), nullable=False),
        sa.Column("replayed_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("replayed_by", sa.String(length=200), nullable=False),
        sa.Column("result", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("replay_id"),
    )
    op.create_index(
        "ix_consumer_quarantine_replay_row",
        "consumer_quarantine_replay",
        ["quarantine_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_consumer_quarantine_replay_row", table_name="consumer_quarantine_replay")
    op.drop_table("consumer_quarantine_replay")
    op.drop_table("known_schema")
    op.drop_index("ix_inbox_share_notification", table_name="inbox_share")
    op.drop_table("inbox_share")
    op.drop_index("ix_inbox_read_item", table_name="inbox_read")
    op.drop_table("inbox_read")
    op.drop_table("inbox_client")
    op.drop_table("inbox_account")
