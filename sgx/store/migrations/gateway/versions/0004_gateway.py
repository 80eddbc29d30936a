"""gateway 0004: keys for the look-ups that scanned history: judged messages by message id
(the primary key now leads with it), consent requests awaiting an answer, by author; and
where each allocation update was first read (the gateway no longer loads every id).

The index is created only if it is not there yet, so an operator of a large PostgreSQL
store may build it beforehand without blocking writers (``CREATE INDEX CONCURRENTLY`` with
the same name and columns; docs/design.md, "What the exchange keeps, and for how long").
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "gateway_0004"
down_revision = "gateway_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _judged_message_led_by_message_id()
    # where each allocation update was first read: a starting gateway asks this of a copy
    # it reads, instead of holding every id it ever applied in memory
    op.add_column("gateway_allocation_messages", sa.Column("topic", sa.String(300)))
    op.add_column("gateway_allocation_messages", sa.Column("partition", sa.Integer()))
    op.add_column("gateway_allocation_messages", sa.Column("offset", sa.BigInteger()))
    op.create_index(
        "ix_consent_request_awaiting",
        "consent_request",
        ["answer_id", "author"],
        unique=False,
        if_not_exists=True,
    )


def _judged_message_led_by_message_id() -> None:
    """judged_message's primary key becomes (message_id, sender): the gateway looks a
    batch up by message id alone, which a key led by the sender cannot serve."""
    if op.get_context().dialect.name == "postgresql":  # the index is rebuilt, not the table
        op.execute(
            "ALTER TABLE judged_message DROP CONSTRAINT judged_message_pkey,"
            " ADD CONSTRAINT judged_message_pkey PRIMARY KEY (message_id, sender)"
        )
        return
    # SQLite cannot change a primary key in place: a new table, the rows, the old name
    op.create_table(
        "judged_message_0004",
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("type_label", sa.String(length=100), nullable=False),
        sa.Column("judged_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "sender"),
    )
    columns = '"sender", "message_id", "topic", "partition", "offset", "item", "outcome",'
    columns += ' "type_label", "judged_at"'
    op.execute(f"INSERT INTO judged_message_0004 ({columns}) SELECT {columns} FROM judged_message")
    op.drop_table("judged_message")
    op.rename_table("judged_message_0004", "judged_message")


def downgrade() -> None:
    for column in ("offset", "partition", "topic"):
        op.drop_column("gateway_allocation_messages", column)
    op.drop_index("ix_consent_request_awaiting", table_name="consent_request")
