"""queue 0008: each sealed delivery kept once (queue_delivery), named by every addressee's
row (queue_item.delivery_id), instead of a copy in each row; a row's own envelope is
kept only by rows queued before (nullable now).

On SQLite a column cannot be made nullable in place: queue_item is copied into a new
table of the same name (Alembic's batch mode), so a large queue upgrades in a quiet hour.
"""

import sqlalchemy as sa
from alembic import op

revision = "queue_0008"
down_revision = "queue_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_delivery",
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id"),
    )
    with op.batch_alter_table("queue_item") as batch:
        batch.add_column(sa.Column("delivery_id", sa.String(length=64), nullable=True))
        batch.alter_column("envelope", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("queue_item") as batch:
        batch.alter_column("envelope", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("delivery_id")
    op.drop_table("queue_delivery")
