"""queue 0005: failed local sign-ins per name and per address, and locked names
(inbox_sign_in_failure; consumers/inbox/throttle.py); server-side sessions (inbox_session;
consumers/inbox/sessions.py); a local account can be disabled (inbox_account.disabled);
an API client's token expires (inbox_client.expires_at).
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0005"
down_revision = "queue_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_sign_in_failure",
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index(
        "ix_inbox_sign_in_failure_last",
        "inbox_sign_in_failure",
        ["last_failed_at"],
        unique=False,
    )

    op.create_table(
        "inbox_session",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=50), nullable=True),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("via", sa.String(length=10), nullable=False),
        sa.Column("created_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_why", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    op.create_index("ix_inbox_session_subject", "inbox_session", ["subject"], unique=False)
    op.create_index("ix_inbox_session_username", "inbox_session", ["username"], unique=False)
    op.add_column(
        "inbox_account",
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "inbox_client",
        sa.Column("expires_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("inbox_client", "expires_at")
    op.drop_column("inbox_account", "disabled")
    op.drop_index("ix_inbox_session_username", table_name="inbox_session")
    op.drop_index("ix_inbox_session_subject", table_name="inbox_session")
    op.drop_table("inbox_session")
    op.drop_index("ix_inbox_sign_in_failure_last", table_name="inbox_sign_in_failure")
    op.drop_table("inbox_sign_in_failure")
