"""gateway 0002: the replay log (gateway_quarantine_replay).

Generated with Alembic's autogenerate from the store's table definitions of that release
(``scripts/render-migration.py``), then kept as written: never edit a published migration.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_quarantine_replay",
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
        "ix_gateway_quarantine_replay_row",
        "gateway_quarantine_replay",
        ["quarantine_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_gateway_quarantine_replay_row", table_name="gateway_quarantine_replay")
    op.drop_table("gateway_quarantine_replay")
