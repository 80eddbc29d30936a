"""gateway 0005: an LA's case of several child keys (the identifiers one allocation named
together) is kept in the snapshot: each key's ``case_id``, and the index a closure or a
re-allocation naming any key of the case finds the others by.

Rows written before have no case id: each key is a case of its own, as they were applied.
The index is created only if it is not there yet, so an operator of a large PostgreSQL
store may build it beforehand without blocking writers (``CREATE INDEX CONCURRENTLY`` with
the same name and columns; docs/design.md, "What the exchange keeps, and for how long").
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0005"
down_revision = "gateway_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gateway_allocations", sa.Column("case_id", sa.String(length=64)))
    op.create_index(
        "ix_gateway_allocations_case",
        "gateway_allocations",
        ["local_authority", "case_id"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_gateway_allocations_case", table_name="gateway_allocations")
    op.drop_column("gateway_allocations", "case_id")
