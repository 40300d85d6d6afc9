"""event ids as 64-bit integers on PostgreSQL

The event log is append-only: a 32-bit id (and its sequence) would run out after 2**31
events, years of a busy fleet's life. SQLite's INTEGER PRIMARY KEY is 64-bit already.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _set_width(big: bool) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    kind = sa.BigInteger() if big else sa.Integer()
    op.alter_column('events', 'id', type_=kind, existing_nullable=False)
    op.alter_column('webhook_cursors', 'last_event_id', type_=kind, existing_nullable=False)
    sequence = op.get_bind().execute(
        sa.text("SELECT pg_get_serial_sequence('events', 'id')")
    ).scalar()
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} AS {'BIGINT' if big else 'INTEGER'}")


def upgrade() -> None:
    _set_width(True)


def downgrade() -> None:
    _set_width(False)
