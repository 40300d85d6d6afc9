"""monitor markers (offline, late) and webhook delivery cursors

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import zfs_sync.storage.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_cursors',
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('last_event_id', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', zfs_sync.storage.types.UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', zfs_sync.storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('url'),
    )
    with op.batch_alter_table('systems', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('offline_notified_seen', zfs_sync.storage.types.UTCDateTime(), nullable=True)
        )
    with op.batch_alter_table('sync_states', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('late_since', zfs_sync.storage.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('sync_states', schema=None) as batch_op:
        batch_op.drop_column('late_since')
    with op.batch_alter_table('systems', schema=None) as batch_op:
        batch_op.drop_column('offline_notified_seen')
    op.drop_table('webhook_cursors')
