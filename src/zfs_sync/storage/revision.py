"""The plan revision: one random value, replaced whenever a plan's inputs may have changed.

``Database.write()`` replaces it at the end of every write transaction unless the
transaction was opened ``plan_neutral`` (it writes only what plans do not read: heartbeat
times, stored states, events, webhook cursors) and nothing in it called
``inputs_changed``. The new value commits with the data, so a reader that reads the value
first and the data after sees data at least as new as the value says.
"""

from __future__ import annotations

import secrets

from sqlalchemy import text
from sqlalchemy.orm import Session

CHANGED = "zfs_sync.plan_inputs_changed"  # session.info key: replace the value at commit

_READ = text("SELECT value FROM plan_revision WHERE id = 1")
_REPLACE = text(
    "INSERT INTO plan_revision (id, value) VALUES (1, :value) "
    "ON CONFLICT (id) DO UPDATE SET value = excluded.value"
)


def read(session: Session) -> int | None:
    """The current value (None: no row, e.g. a table emptied by hand; nothing is cached)."""
    value = session.execute(_READ).scalar()
    return int(value) if value is not None else None


def inputs_changed(session: Session) -> None:
    """Say that this write changed something plans read (replace the value at commit)."""
    session.info[CHANGED] = True


def changed(session: Session) -> bool:
    return bool(session.info.get(CHANGED))


def replace(session: Session) -> None:
    session.execute(_REPLACE, {"value": secrets.randbits(62)})
