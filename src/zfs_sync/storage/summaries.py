"""Per-(system, dataset) summaries on the ``datasets`` table: snapshot count and newest time.

Every snapshot write calls ``refresh_dataset_summaries`` for the datasets it touched, in the
same transaction. The planner reads these summaries to load only each dataset's newest
snapshots (``storage/plan_inputs.py``) instead of whole histories.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from zfs_sync.domain.names import pool_of
from zfs_sync.storage.models import Dataset, Snapshot

CHUNK = 500


def refresh_dataset_summaries(
    session: Session, system_id: str, datasets: Collection[str], now: datetime
) -> None:
    """Recount the given datasets of one system; add or drop implied dataset rows."""
    names = sorted(set(datasets))
    for start in range(0, len(names), CHUNK):
        _refresh_chunk(session, system_id, names[start : start + CHUNK], now)


def _refresh_chunk(session: Session, system_id: str, names: list[str], now: datetime) -> None:
    counts = {
        dataset: (count, newest)
        for dataset, count, newest in session.execute(
            select(Snapshot.dataset, func.count(), func.max(Snapshot.timestamp))
            .where(Snapshot.system_id == system_id, Snapshot.dataset.in_(names))
            .group_by(Snapshot.dataset)
        )
    }
    rows = {
        name: (ident, reported)
        for ident, name, reported in session.execute(
            select(Dataset.id, Dataset.name, Dataset.reported).where(
                Dataset.system_id == system_id, Dataset.name.in_(names)
            )
        )
    }
    newest_names = _newest_names(session, system_id, [n for n in names if n in counts])
    for name in names:
        count, newest = counts.get(name, (0, None))
        newest_name = newest_names.get(name)
        row = rows.get(name)
        if row is None and count:
            session.execute(
                insert(Dataset).values(
                    system_id=system_id, name=name, pool=pool_of(name), encryption=False,
                    updated_at=now, reported=False, snapshot_count=count, newest_timestamp=newest,
                    newest_name=newest_name,
                )
            )
        elif row is not None and not count and not row[1]:
            session.execute(delete(Dataset).where(Dataset.id == row[0]))
        elif row is not None:
            session.execute(
                update(Dataset)
                .where(Dataset.id == row[0])
                .values(snapshot_count=count, newest_timestamp=newest, newest_name=newest_name)
            )


def _newest_names(session: Session, system_id: str, names: list[str]) -> dict[str, str]:
    """The newest snapshot's name per dataset (by creation time, then createtxg)."""
    found: dict[str, str] = {}
    for name in names:
        newest = session.scalar(
            select(Snapshot.name)
            .where(Snapshot.system_id == system_id, Snapshot.dataset == name)
            .order_by(Snapshot.timestamp.desc(), Snapshot.createtxg.desc())
            .limit(1)
        )
        if newest is not None:
            found[name] = newest
    return found
