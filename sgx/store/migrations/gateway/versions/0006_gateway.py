"""gateway 0006: MASH information requests and their answers (``information_request``,
gateway.information_book).

One row per request the gateway forwarded to an agency: the asking LA, the agency, the
BRAG rating and deadline, the child's pseudonym, the family-informed decision; the
agency's answer on the same row. The open-by-deadline index serves the monitor's count of
overdue requests, which reads open rows only.
"""

import sqlalchemy as sa
from alembic import op

import sgx.store.db

revision = "gateway_0006"
down_revision = "gateway_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "information_request",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("local_authority", sa.String(length=200), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("agency_kind", sa.String(length=50), nullable=False),
        sa.Column("rating", sa.String(length=10), nullable=False),
        sa.Column("deadline", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("child_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("family_told", sa.Boolean(), nullable=False),
        sa.Column("family_exception", sa.String(length=40), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sgx.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("answer_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("answered_by", sa.Text(), nullable=True),
        sa.Column("automatic", sa.Boolean(), nullable=True),
        sa.Column("answered_at", sgx.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_information_request_open", "information_request", ["answer_id", "deadline"])
    op.create_index(
        "ix_information_request_agency", "information_request", ["agency", "requested_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_information_request_agency", table_name="information_request")
    op.drop_index("ix_information_request_open", table_name="information_request")
    op.drop_table("information_request")
