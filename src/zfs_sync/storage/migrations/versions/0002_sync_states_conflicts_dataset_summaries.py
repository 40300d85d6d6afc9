"""sync states, conflicts, dataset summaries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 21:32:45.841787
"""

import sqlalchemy as sa
from alembic import op

import zfs_sync.storage.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conflicts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('sync_group_id', sa.String(length=36), nullable=False),
    sa.Column('dataset', sa.String(length=255), nullable=False),
    sa.Column('target_system_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('source_system_id', sa.String(length=36), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.String(length=32), nullable=True),
    sa.Column('allowed_discard', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('applied', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolved_at', zfs_sync.storage.types.UTCDateTime(), nullable=True),
    sa.Column('detected_at', zfs_sync.storage.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', zfs_sync.storage.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['sync_group_id'], ['sync_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_system_id'], ['systems.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sync_group_id', 'dataset', 'target_system_id', 'type', name='uq_conflicts_key')
    )
    with op.batch_alter_table('conflicts', schema=None) as batch_op:
        batch_op.create_index('ix_conflicts_status', ['status'], unique=False)

    op.create_table('sync_states',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('sync_group_id', sa.String(length=36), nullable=False),
    sa.Column('dataset', sa.String(length=255), nullable=False),
    sa.Column('target_system_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('claim_status', sa.String(length=16), nullable=True),
    sa.Column('claim_at', zfs_sync.storage.types.UTCDateTime(), nullable=True),
    sa.Column('claim_error', sa.Text(), nullable=True),
    sa.Column('claim_snapshot_name', sa.String(length=255), nullable=True),
    sa.Column('claim_snapshot_guid', zfs_sync.storage.types.Guid(), nullable=True),
    sa.Column('claim_target_newest_name', sa.String(length=255), nullable=True),
    sa.Column('claim_target_newest_guid', zfs_sync.storage.types.Guid(), nullable=True),
    sa.Column('claim_action_id', sa.String(length=64), nullable=True),
    sa.Column('last_sync', zfs_sync.storage.types.UTCDateTime(), nullable=True),
    sa.Column('last_transfer_bytes', sa.BigInteger(), nullable=True),
    sa.Column('last_transfer_seconds', sa.Float(), nullable=True),
    sa.Column('last_check', zfs_sync.storage.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', zfs_sync.storage.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['sync_group_id'], ['sync_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_system_id'], ['systems.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sync_group_id', 'dataset', 'target_system_id', name='uq_sync_states_edge')
    )
    with op.batch_alter_table('sync_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_states_target_system_id'), ['target_system_id'], unique=False)

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reported', sa.Boolean(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('snapshot_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('newest_timestamp', zfs_sync.storage.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('newest_name', sa.String(length=255), nullable=True))

    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_snapshots_window', ['system_id', 'dataset', 'timestamp'], unique=False)

    # Backfill the summaries: datasets known only through their snapshots get implied rows.
    op.execute(
        "INSERT INTO datasets (system_id, name, pool, encryption, updated_at, reported, "
        "snapshot_count, newest_timestamp) "
        "SELECT s.system_id, s.dataset, min(s.pool), false, max(s.updated_at), false, 0, NULL "
        "FROM snapshots s WHERE NOT EXISTS (SELECT 1 FROM datasets d "
        "WHERE d.system_id = s.system_id AND d.name = s.dataset) "
        "GROUP BY s.system_id, s.dataset"
    )
    op.execute(
        "UPDATE datasets SET "
        "snapshot_count = (SELECT count(*) FROM snapshots s "
        "WHERE s.system_id = datasets.system_id AND s.dataset = datasets.name), "
        "newest_timestamp = (SELECT max(s.timestamp) FROM snapshots s "
        "WHERE s.system_id = datasets.system_id AND s.dataset = datasets.name)"
    )
    op.execute(
        "UPDATE datasets SET newest_name = (SELECT s.name FROM snapshots s "
        "WHERE s.system_id = datasets.system_id AND s.dataset = datasets.name "
        "ORDER BY s.timestamp DESC, s.createtxg DESC LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshots_window')

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('newest_name')
        batch_op.drop_column('newest_timestamp')
        batch_op.drop_column('snapshot_count')
        batch_op.drop_column('reported')

    with op.batch_alter_table('sync_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_states_target_system_id'))

    op.drop_table('sync_states')
    with op.batch_alter_table('conflicts', schema=None) as batch_op:
        batch_op.drop_index('ix_conflicts_status')

    op.drop_table('conflicts')
