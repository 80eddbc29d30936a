"""outbox 0003: an index for an agency's open consent requests (the push endpoint's list),
which read the agency's whole request history.

Created only if it is not there yet (docs/design.md, "What the exchange keeps, and for how
long").
"""

from alembic import op

revision = "outbox_0003"
down_revision = "outbox_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_consent_request_open",
        "outbox_consent_request",
        ["agency", "answer_id", "consent_id"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_consent_request_open", table_name="outbox_consent_request")
