"""outbox 0002: consent requests put to the agency as author (outbox_consent_request).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "outbox_0002"
down_revision = "outbox_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_consent_request",
        sa.Column(
            "consent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("local_authority", sa.String(length=200), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=30), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("blocking", sa.Text(), nullable=False),
        sa.Column("requested_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(length=10), nullable=True),
        sa.Column("answer_id", sa.String(length=36), nullable=True),
        sa.Column("answered_by", sa.String(length=200), nullable=True),
        sa.Column("court_order", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("answered_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("consent_id"),
        sa.UniqueConstraint("agency", "request_id", name="uq_outbox_consent_request"),
    )


def downgrade() -> None:
    op.drop_table("outbox_consent_request")
