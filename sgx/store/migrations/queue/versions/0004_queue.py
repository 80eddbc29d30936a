"""queue 0004: an index for a team's rows (a supervisor's queue, a team-scoped API client)
and the monitor's unread rows by team, which scanned the whole queue history.

It is created only if it is not there yet, so an operator of a large PostgreSQL
store may build it beforehand without blocking writers (``CREATE INDEX CONCURRENTLY`` with
the same name and columns; docs/design.md, "What the exchange keeps, and for how long").
"""

from alembic import op

revision = "queue_0004"
down_revision = "queue_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_queue_item_status",
        "queue_item",
        ["status", "team", "item_id"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_queue_item_status", table_name="queue_item")
