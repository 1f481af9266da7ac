"""A problem or strength records when it was stored, as a contact-log entry does; findings
stored before have no such time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 18:10:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_at', shared.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_column('recorded_at')
