"""queue 0006: families informed (consumers/inbox/family_store.py). family_disclosure: each
disclosure the family should hear of (an onward share, later a network check) and the
decision in force; family_decision: every family-informed decision recorded, append only.

The shares asked before this revision are registered as disclosures (made if the exchange
allowed them), with no decision: nobody recorded whether those families were told, so they
show as outstanding until someone does.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "queue_0006"
down_revision = "queue_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "family_decision",
        sa.Column(
            "decision_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("disclosure_id", sa.Integer(), nullable=False),
        sa.Column("informed", sa.Boolean(), nullable=False),
        sa.Column("informed_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("informed_by", sa.String(length=200), nullable=True),
        sa.Column("method", sa.String(length=20), nullable=True),
        sa.Column("family_member", sa.String(length=200), nullable=True),
        sa.Column("exception", sa.String(length=50), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.Column("decided_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorder_kind", sa.String(length=10), nullable=False),
        sa.Column("recorded_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("supersedes", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_index(
        "ix_family_decision_disclosure",
        "family_decision",
        ["disclosure_id", "decision_id"],
        unique=False,
    )
    op.create_table(
        "family_disclosure",
        sa.Column(
            "disclosure_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("to_name", sa.String(length=300), nullable=False),
        sa.Column("to_category", sa.String(length=50), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("asked_by", sa.String(length=200), nullable=False),
        sa.Column("asked_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("made", sa.Boolean(), nullable=True),
        sa.Column("made_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("disclosure_id"),
        sa.UniqueConstraint("kind", "ref", name="uq_family_disclosure_ref"),
    )
    op.create_index(
        "ix_family_disclosure_notification",
        "family_disclosure",
        ["notification_id"],
        unique=False,
    )
    op.create_index(
        "ix_family_disclosure_outstanding",
        "family_disclosure",
        ["decision_id", "made", "made_at"],
        unique=False,
    )
    op.execute(
        "INSERT INTO family_disclosure (kind, ref, item_id, notification_id, to_name,"
        " to_category, purpose, asked_by, asked_at, made, made_at)"
        " SELECT 'onward_share', CAST(share_id AS VARCHAR(64)), item_id, notification_id,"
        " to_name, to_category, purpose, requested_by, requested_at, allowed,"
        " CASE WHEN allowed THEN decided_at END"
        " FROM inbox_share ORDER BY share_id"
    )


def downgrade() -> None:
    op.drop_index("ix_family_disclosure_outstanding", table_name="family_disclosure")
    op.drop_index("ix_family_disclosure_notification", table_name="family_disclosure")
    op.drop_table("family_disclosure")
    op.drop_index("ix_family_decision_disclosure", table_name="family_decision")
    op.drop_table("family_decision")
