"""queue 0005: failed local sign-ins per name and per address, and locked names
(inbox_sign_in_failure; consumers/inbox/throttle.py).
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


def downgrade() -> None:
    op.drop_index("ix_inbox_sign_in_failure_last", table_name="inbox_sign_in_failure")
    op.drop_table("inbox_sign_in_failure")
