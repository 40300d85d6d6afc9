"""Per-(system, dataset) summaries on the ``datasets`` table: snapshot count and newest one.

Every snapshot write calls ``refresh_dataset_summaries`` for the datasets it touched, in the
same transaction. The planner reads these summaries to load only each dataset's newest
snapshots (``storage/plan_inputs.py``) instead of whole histories, and the dashboard and
group status show the newest snapshot's name from here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from zfs_sync.domain.names import pool_of
from zfs_sync.storage.models import Dataset, Snapshot

CHUNK = 500
DATASETS = cast(Table, Dataset.__table__)  # Core statements: executemany, no ORM bookkeeping
Summary = tuple[int, datetime | None, str | None]  # count, newest time, newest name


def refresh_dataset_summaries(
    session: Session,
    system_id: str,
    datasets: Collection[str],
    now: datetime,
    known: dict[str, Summary] | None = None,
) -> None:
    """Recount the given datasets of one system; add or drop implied dataset rows.

    ``known``: summaries the caller already has (a full report knows exactly what each
    dataset now holds), which spares reading the rows back.
    """
    names = sorted(set(datasets))
    for start in range(0, len(names), CHUNK):
        _refresh_chunk(session, system_id, names[start : start + CHUNK], now, known)


def dataset_rows(session: Session, system_ids: Collection[str] | None = None) -> list[Dataset]:
    """The summaries of every dataset (of ``system_ids`` when given), by system and name."""
    query = select(Dataset).order_by(Dataset.system_id, Dataset.name)
    if system_ids is not None:
        query = query.where(Dataset.system_id.in_(list(system_ids)))
    return list(session.scalars(query))


def summarise(snapshots: Iterable[tuple[str, str, datetime, int | None]]) -> dict[str, Summary]:
    """Summaries from (dataset, name, timestamp, createtxg) rows: count and newest."""
    counts: dict[str, int] = {}
    newest: dict[str, tuple[datetime, int, str]] = {}
    seen: set[tuple[str, str]] = set()
    for dataset, name, timestamp, txg in snapshots:
        if (dataset, name) in seen:
            continue  # reported twice: one snapshot
        seen.add((dataset, name))
        counts[dataset] = counts.get(dataset, 0) + 1
        key = (timestamp, -1 if txg is None else txg, name)
        if dataset not in newest or key > newest[dataset]:
            newest[dataset] = key
    return {d: (n, newest[d][0], newest[d][2]) for d, n in counts.items()}


def _summaries(session: Session, system_id: str, names: list[str]) -> dict[str, Summary]:
    """One pass over the touched datasets' rows: count and newest (time, then createtxg)."""
    rank = (
        func.row_number()
        .over(
            partition_by=Snapshot.dataset,
            order_by=(Snapshot.timestamp.desc(), Snapshot.createtxg.desc(), Snapshot.name.desc()),
        )
        .label("rank")
    )
    count = func.count().over(partition_by=Snapshot.dataset).label("count")
    ranked = (
        select(Snapshot.dataset, Snapshot.name, Snapshot.timestamp, count, rank)
        .where(Snapshot.system_id == system_id, Snapshot.dataset.in_(names))
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.dataset, ranked.c["count"], ranked.c.timestamp, ranked.c.name).where(
            ranked.c.rank == 1
        )
    )
    return {dataset: (n, newest, name) for dataset, n, newest, name in rows}


def _refresh_chunk(
    session: Session,
    system_id: str,
    names: list[str],
    now: datetime,
    known: dict[str, Summary] | None,
) -> None:
    found = _summaries(session, system_id, names) if known is None else known
    rows = {
        name: (ident, reported)
        for ident, name, reported in session.execute(
            select(Dataset.id, Dataset.name, Dataset.reported).where(
                Dataset.system_id == system_id, Dataset.name.in_(names)
            )
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    drops: list[int] = []
    for name in names:
        count, newest, newest_name = found.get(name, (0, None, None))
        row = rows.get(name)
        if row is None and count:
            inserts.append({
                "system_id": system_id, "name": name, "pool": pool_of(name),
                "encryption": False, "updated_at": now, "reported": False,
                "snapshot_count": count, "newest_timestamp": newest, "newest_name": newest_name,
            })
        elif row is not None and not count and not row[1]:
            drops.append(row[0])
        elif row is not None:
            updates.append({"b_id": row[0], "b_count": count, "b_newest": newest,
                            "b_name": newest_name})
    if inserts:
        session.execute(insert(DATASETS), inserts)
    if updates:
        session.execute(
            update(DATASETS)
            .where(DATASETS.c.id == bindparam("b_id"))
            .values(
                snapshot_count=bindparam("b_count"),
                newest_timestamp=bindparam("b_newest", type_=Dataset.newest_timestamp.type),
                newest_name=bindparam("b_name"),
            ),
            updates,
        )
    if drops:
        session.execute(delete(Dataset).where(Dataset.id.in_(drops)))
