"""attendance 0001: the schema of release 0.1 (before versioned migrations).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "attendance_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "school_attendance_pushed",
        sa.Column("school_id", sa.String(length=64), nullable=False),
        sa.Column("child_key", sa.LargeBinary(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("submitted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("school_id", "child_key"),
    )


def downgrade() -> None:
    op.drop_table("school_attendance_pushed")
