"""An agency's access to a family is decided by the family's consent (services/registry/access.py),
not by a table of grants: ``agency_access`` goes, and ``known_agencies`` keeps each directory
agency's kind (learned from referrals' agency events), which the consent names.

The grants are not carried over: the rule derives them from the measures and agreements.
Downgrade rebuilds them as the old code kept them (a non-cancelled measure of an open case).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('known_agencies',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('agency_version', sa.Integer(), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_known_agencies'))
    )
    with op.batch_alter_table('agency_access', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agency_access_agency_id'))
    op.drop_table('agency_access')


def downgrade() -> None:
    """Downgrade schema."""
    op.create_table('agency_access',
    sa.Column('family_id', sa.String(length=36), nullable=False),
    sa.Column('agency_id', sa.String(length=64), nullable=False),
    sa.Column('granted_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['family_id'], ['families.id'], name=op.f('fk_agency_access_family_id_families'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('family_id', 'agency_id', name=op.f('pk_agency_access'))
    )
    with op.batch_alter_table('agency_access', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agency_access_agency_id'), ['agency_id'], unique=False)
    op.execute(
        "INSERT INTO agency_access (family_id, agency_id, granted_at) "
        "SELECT DISTINCT m.family_id, m.agency_id, CURRENT_TIMESTAMP FROM measures m "
        "JOIN cases c ON c.id = m.case_id "
        "WHERE m.agency_id IS NOT NULL AND m.status <> 'cancelled' AND c.closed_on IS NULL"
    )
    op.drop_table('known_agencies')
