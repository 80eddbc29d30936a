"""requests 0001: the schema of release 0.1 (before versioned migrations).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "requests_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disclosure_request",
        sa.Column("request_reference", sa.String(length=200), nullable=False),
        sa.Column("la_id", sa.String(length=200), nullable=False),
        sa.Column("police_id", sa.String(length=200), nullable=False),
        sa.Column("protocol", sa.String(length=20), nullable=False),
        sa.Column("requested_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("due_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("child_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("answered_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("disclosure_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("request_reference"),
    )
    op.create_index(
        op.f("ix_disclosure_request_answered_at"),
        "disclosure_request",
        ["answered_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_disclosure_request_due_at"), "disclosure_request", ["due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_disclosure_request_due_at"), table_name="disclosure_request")
    op.drop_index(op.f("ix_disclosure_request_answered_at"), table_name="disclosure_request")
    op.drop_table("disclosure_request")
