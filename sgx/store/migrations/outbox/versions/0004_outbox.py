"""outbox 0004: the local authorities' responses to the agency's referrals
(``outbox_referral_response``, producers.referral_outcomes), as each LA signed them.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "outbox_0004"
down_revision = "outbox_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_referral_response",
        sa.Column("heard_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("response_id", sa.String(length=36), nullable=False),
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("local_authority", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("decision", sa.String(length=40), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("next_steps", sa.Text(), nullable=True),
        sa.Column("la_contact", sa.Text(), nullable=False),
        sa.Column("la_reference", sa.String(length=200), nullable=True),
        sa.Column("responded_by", sa.Text(), nullable=False),
        sa.Column("responded_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("signer_key_id", sa.String(length=200), nullable=False),
        sa.Column("signed_response", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("heard_id"),
        sa.UniqueConstraint("agency", "response_id", name="uq_outbox_referral_response"),
    )
    op.create_index(
        "ix_outbox_referral_response_referral",
        "outbox_referral_response",
        ["agency", "referral_id", "heard_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_referral_response_referral", table_name="outbox_referral_response")
    op.drop_table("outbox_referral_response")
