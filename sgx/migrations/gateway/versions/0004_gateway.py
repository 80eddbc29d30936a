"""gateway 0004: indexes for the lookups that scanned history (judged messages by message
id; consent requests awaiting an answer, by author).

Each index is created only if it is not there yet, so an operator of a large PostgreSQL
store may build it beforehand without blocking writers (``CREATE INDEX CONCURRENTLY`` with
the same name and columns; docs/design.md, "What the exchange keeps, and for how long").
"""

from alembic import op

revision = "gateway_0004"
down_revision = "gateway_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_judged_message_message_id",
        "judged_message",
        ["message_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_consent_request_awaiting",
        "consent_request",
        ["answer_id", "author"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_consent_request_awaiting", table_name="consent_request")
    op.drop_index("ix_judged_message_message_id", table_name="judged_message")
