"""queue 0007: the LA's acknowledgements of and decisions on referrals, made from the inbox
(inbox_referral_response; consumers/inbox/referral_store.py).
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0007"
down_revision = "queue_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_referral_response",
        sa.Column(
            "response_row", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("response_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("referrer", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("decision", sa.String(length=40), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("next_steps", sa.Text(), nullable=True),
        sa.Column("la_contact", sa.Text(), nullable=False),
        sa.Column("la_reference", sa.String(length=200), nullable=True),
        sa.Column("responded_by", sa.String(length=200), nullable=False),
        sa.Column("responded_as", sa.Text(), nullable=False),
        sa.Column("responded_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("outcome_detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("response_row"),
        sa.UniqueConstraint("response_id"),
    )
    op.create_index(
        "ix_inbox_referral_response_notification",
        "inbox_referral_response",
        ["notification_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_referral_response_notification", table_name="inbox_referral_response")
    op.drop_table("inbox_referral_response")
