"""messages.sealed_links: capability links kept sealed apart from the bodies; the bodies of
messages already handed over lose theirs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 18:00:00.000000

"""
import re
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

MARKER = "[ссылка для получателя]"
SIGNED = re.compile(r"https?://[^\s\"'<>]*[?&](?:amp;)?token=[A-Za-z0-9._\-]+")
# the recipient already has these messages; what is still to be sent keeps its links (the
# migration has no link secret to seal them with) and goes out as it was
HANDED_OVER = ("sent", "delivered", "failed", "bounced")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed_links', sa.Text(), nullable=True))
    messages = sa.table(
        'messages',
        sa.column('id', sa.String), sa.column('state', sa.String), sa.column('subject', sa.String),
        sa.column('text', sa.Text), sa.column('html', sa.Text), sa.column('link', sa.String),
        sa.column('short_code', sa.String), sa.column('body_purged', sa.Boolean),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(messages).where(
            messages.c.state.in_(HANDED_OVER),
            messages.c.body_purged.is_(False),
            sa.or_(
                messages.c.text.like('%token=%'),
                messages.c.html.like('%token=%'),
                messages.c.subject.like('%token=%'),
                messages.c.link.like('%token=%'),
            ),
        )
    ).all()
    for row in rows:
        bodies = {k: getattr(row, k) for k in ('subject', 'text', 'html')}
        bodies = {k: SIGNED.sub(MARKER, v) if v else v for k, v in bodies.items()}
        if row.short_code and row.link and 'token=' in row.link and bodies['text']:
            short = re.compile(r"https?://\S*/r/" + re.escape(row.short_code) + r"\b")
            bodies['text'] = short.sub(MARKER, bodies['text'])
        bind.execute(sa.update(messages).where(messages.c.id == row.id).values(**bodies))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('sealed_links')
