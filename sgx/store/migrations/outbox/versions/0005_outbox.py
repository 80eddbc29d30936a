"""outbox 0005: MASH information requests put to the agency, and its answers
(``outbox_information_request``, producers.information_requests).

One row per request the gateway forwarded: the asking LA, the rating and deadline, what
is asked, the family-informed decision, the child's identifiers the agency was given, and
the agency's answer once given. The open index serves the list of requests awaiting an
answer.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "outbox_0005"
down_revision = "outbox_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_information_request",
        sa.Column(
            "information_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("local_authority", sa.String(length=200), nullable=False),
        sa.Column("rating", sa.String(length=10), nullable=False),
        sa.Column("deadline", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("asked", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("family_told", sa.Boolean(), nullable=False),
        sa.Column("family_exception", sa.String(length=40), nullable=True),
        sa.Column("nhs_number", sa.String(length=10), nullable=True),
        sa.Column("upn", sa.String(length=13), nullable=True),
        sa.Column("given_name", sa.String(length=200), nullable=True),
        sa.Column("family_name", sa.String(length=200), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("postcode", sa.String(length=10), nullable=True),
        sa.Column("received_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("answer_id", sa.String(length=36), nullable=True),
        sa.Column("answered_by", sa.String(length=200), nullable=True),
        sa.Column("automatic", sa.Boolean(), nullable=True),
        sa.Column("answered_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("information_id"),
        sa.UniqueConstraint("agency", "request_id", name="uq_outbox_information_request"),
    )
    op.create_index(
        "ix_outbox_information_request_open",
        "outbox_information_request",
        ["agency", "answer_id", "information_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_information_request_open", table_name="outbox_information_request")
    op.drop_table("outbox_information_request")
