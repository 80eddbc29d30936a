"""requests 0002: referrals and their deadlines (``referral``, gateway.referral_book).

One row per referral and receiving LA: the referrer, the child's pseudonym, when the
gateway routed it, when the LA must acknowledge it and decide, and what the LA has said.
The two indexes serve the monitor's count of overdue referrals, which reads open rows only.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "requests_0002"
down_revision = "requests_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("la_id", sa.String(length=200), nullable=False),
        sa.Column("referrer", sa.String(length=200), nullable=False),
        sa.Column("referrer_kind", sa.String(length=50), nullable=False),
        sa.Column("child_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("received_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("acknowledge_due", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decide_due", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("referral_id", "la_id"),
    )
    op.create_index(
        "ix_referral_unacknowledged",
        "referral",
        ["acknowledged_at", "acknowledge_due"],
        unique=False,
    )
    op.create_index("ix_referral_undecided", "referral", ["decided_at", "decide_due"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_referral_undecided", table_name="referral")
    op.drop_index("ix_referral_unacknowledged", table_name="referral")
    op.drop_table("referral")
