"""A referral's answer links issued before a resend's fresh one stop working
(``notifications.link.reissued``).

Revision ID: 0010_answer_link_floors
Revises: 0009_audit_append_only
Create Date: 2026-12-07 18:20:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0010_answer_link_floors'
down_revision: Union[str, Sequence[str], None] = '0009_audit_append_only'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('answer_link_floors',
    sa.Column('referral_id', sa.String(length=36), nullable=False),
    sa.Column('issued_from', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('referral_id', name=op.f('pk_answer_link_floors'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('answer_link_floors')
