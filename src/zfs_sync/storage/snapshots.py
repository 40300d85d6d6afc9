"""Snapshot reports: upserts (single and batch) and the full-state report of a system.

Reports are the witness's hot path: an agent sends the whole state of its host (tens of
thousands of snapshots) every cycle, and mostly nothing has changed. So a report is applied
with one select of the system's current rows (only the columns compared), a diff in Python and
``executemany`` statements for what differs; an unchanged snapshot costs no write at all. The
same statements run on SQLite and PostgreSQL (see ``_Bulk``).

A missing value (guid, createtxg, sizes) in a report never erases a known one: the guide's
scripts report snapshots without guids that an agent reported with them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    DateTime,
    Dialect,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from zfs_sync.domain.names import pool_of
from zfs_sync.domain.parsing import as_utc
from zfs_sync.storage import revision
from zfs_sync.storage.common import NotFound
from zfs_sync.storage.models import Dataset, Snapshot, System
from zfs_sync.storage.summaries import refresh_dataset_summaries, summarise
from zfs_sync.storage.types import guid_to_db

SNAPSHOTS = cast(Table, Snapshot.__table__)
DATASETS = cast(Table, Dataset.__table__)
CHUNK = 500  # ids per DELETE ... IN (...), well under every driver's parameter limit


class SnapshotFacts(NamedTuple):
    """One reported snapshot, validated and normalised (full dataset, short name, UTC)."""

    system_id: str | None
    pool: str
    dataset: str
    name: str
    timestamp: datetime
    guid: int | None = None
    createtxg: int | None = None
    size: int | None = None
    referenced: int | None = None


class DatasetFacts(NamedTuple):
    name: str
    encryption: bool = False
    receive_resume_token: str | None = None


@dataclass(frozen=True)
class WriteCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0


# A stored snapshot as the driver returns it, without its key: (id, pool, guid, createtxg,
# timestamp, size, referenced), the guid signed and the timestamp in the database's own form.
# Plain tuples: a full report loads and compares tens of thousands of them.
Stored = tuple[Any, ...]
Key = tuple[str, str]  # (dataset, name)


def new_ids(count: int) -> list[str]:
    """``count`` UUIDv7 strings, increasing: rows of one report land together in the index.

    ``str(uuid.uuid4())`` costs microseconds each, which shows at 200,000 snapshots.
    """
    millis = time.time_ns() // 1_000_000
    rand_a = int.from_bytes(os.urandom(2), "big") & 0xFFF
    head = f"{millis:012x}"
    prefix = f"{head[:8]}-{head[8:]}-7{rand_a:03x}-"
    base = int.from_bytes(os.urandom(8), "big") >> 4  # room to count up without overflowing
    variant = 0b10 << 62
    tails = [f"{variant | (base + i):016x}" for i in range(count)]
    return [f"{prefix}{tail[:4]}-{tail[4:]}" for tail in tails]


def _naive(value: datetime) -> datetime:
    """What UTCDateTime binds: the UTC time without a zone."""
    if value.tzinfo is not timezone.utc:
        value = as_utc(value)
    return value.replace(tzinfo=None)


def _iso_text(value: datetime) -> str:
    if value.tzinfo is not timezone.utc:
        value = as_utc(value)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


_SAMPLE = datetime(2026, 11, 26, 9, 5, 3, 120, tzinfo=timezone.utc)


def timestamp_binder(dialect: Dialect) -> Callable[[datetime], Any]:
    """A datetime -> the value UTCDateTime would bind on this dialect.

    That is the naive UTC time, passed through the dialect's DateTime processor: none on
    PostgreSQL, a text form on SQLite. That processor costs several µs a value (measured: a
    sixth of a full report's time), so where ``isoformat`` gives the same text, as checked
    here on a sample, it is used instead.
    """
    processor = DateTime().dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return _naive
    if processor(_naive(_SAMPLE)) == _iso_text(_SAMPLE):
        return _iso_text
    return lambda value: processor(_naive(value))


class _Bulk:
    """The report's statements, run through the driver with values in the stored form.

    SQLAlchemy's per-row parameter handling costs more than SQLite's own work at this volume
    (measured: its executemany ~45 µs a row, the driver's alone ~8), so rows go to the DBAPI
    cursor's ``executemany`` as tuples, in the session's transaction. Values take
    the form the column types would give them: guids through ``guid_to_db``, timestamps as
    UTCDateTime binds them (naive UTC, then the dialect's DateTime processor). That is also the
    form the select returns them in, so stored and reported rows compare without conversion.
    """

    def __init__(self, session: Session) -> None:
        connection = session.connection()  # the session's transaction, already begun
        dialect = connection.dialect
        self.cursor = connection.connection.cursor()
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.quote = dialect.identifier_preparer.quote
        self.timestamp = timestamp_binder(dialect)

    def close(self) -> None:
        self.cursor.close()

    def _columns(self, names: Sequence[str]) -> str:
        return ", ".join(self.quote(name) for name in names)

    def _marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def select(self, system_id: str, datasets: Collection[str] | None) -> dict[Key, Stored]:
        """The system's snapshots (only in ``datasets`` when given) by (dataset, name)."""
        sql = f"SELECT {self._columns(_SELECTED)} FROM snapshots WHERE system_id = {self.mark}"
        if datasets is None:
            self.cursor.execute(sql, (system_id,))
            return {(row[0], row[1]): row[2:] for row in self.cursor.fetchall()}
        stored: dict[Key, Stored] = {}
        names = sorted(set(datasets))
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            self.cursor.execute(f"{sql} AND dataset IN ({self._marks(len(chunk))})",
                                (system_id, *chunk))
            stored.update(((row[0], row[1]), row[2:]) for row in self.cursor.fetchall())
        return stored

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            sql = (f"INSERT INTO snapshots ({self._columns(_INSERTED)}) "
                   f"VALUES ({self._marks(len(_INSERTED))})")
            self.cursor.executemany(sql, rows)

    def update(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            sets = ", ".join(f"{self.quote(name)} = {self.mark}" for name in _UPDATED)
            self.cursor.executemany(f"UPDATE snapshots SET {sets} WHERE id = {self.mark}", rows)

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            self.cursor.execute(f"DELETE FROM snapshots WHERE id IN ({self._marks(len(chunk))})",
                                tuple(chunk))


_SELECTED = (
    "dataset", "name", "id", "pool", "guid", "createtxg", "timestamp", "size", "referenced",
)
_INSERTED = (
    "id", "system_id", "dataset", "name", "pool", "guid", "createtxg", "timestamp", "size",
    "referenced", "created_at", "updated_at",
)
# An update row: the Stored values after the id, then updated_at, then the id.
_UPDATED = ("pool", "guid", "createtxg", "timestamp", "size", "referenced", "updated_at")


@dataclass
class _Diff:
    inserts: list[tuple[Any, ...]]
    updates: list[tuple[Any, ...]]
    unchanged: int
    deletes: list[str]
    touched: set[str]  # datasets whose summaries must be refreshed


def _diff(
    bulk: _Bulk,
    system_id: str,
    stored: dict[Key, Stored],
    reported: Iterable[SnapshotFacts],
    now: datetime,
    *,
    full: bool,
) -> _Diff:
    """Rows to insert, update and delete so that ``stored`` matches ``reported``."""
    # A snapshot reported twice: the last one counts.
    latest: dict[Key, SnapshotFacts] = {(f.dataset, f.name): f for f in reported}
    to_stored = bulk.timestamp
    stamp = to_stored(now)
    # Snapshots taken together (`zfs snapshot -r`, one sanoid run) share creation times.
    times: dict[datetime, Any] = {}
    new: list[tuple[Key, Any, SnapshotFacts]] = []
    updates: list[tuple[Any, ...]] = []
    touched: set[str] = set()
    unchanged = 0
    for key, f in latest.items():
        timestamp = times.get(f.timestamp)
        if timestamp is None:
            timestamp = times[f.timestamp] = to_stored(f.timestamp)
        old = stored.get(key)
        if old is None:
            new.append((key, timestamp, f))
            continue
        guid = guid_to_db(f.guid)
        merged = (  # a value the report leaves out keeps the stored one
            old[0],
            f.pool,
            old[2] if guid is None else guid,
            old[3] if f.createtxg is None else f.createtxg,
            timestamp,
            old[5] if f.size is None else f.size,
            old[6] if f.referenced is None else f.referenced,
        )
        if merged == old:
            unchanged += 1
        else:
            updates.append((*merged[1:], stamp, old[0]))
            touched.add(key[0])
    new.sort(key=_first)  # by (dataset, name): neighbours in the unique index
    inserts = [
        (ident, system_id, *key, f.pool, guid_to_db(f.guid), f.createtxg, timestamp, f.size,
         f.referenced, stamp, stamp)
        for ident, (key, timestamp, f) in zip(new_ids(len(new)), new, strict=True)
    ]
    gone = [(key[0], old[0]) for key, old in stored.items() if key not in latest] if full else []
    touched.update(key[0] for key, _, _ in new)
    touched.update(dataset for dataset, _ in gone)
    return _Diff(inserts, updates, unchanged, [ident for _, ident in gone], touched)


def _first(item: tuple[Key, Any, SnapshotFacts]) -> Key:
    return item[0]


def _apply(session: Session, bulk: _Bulk, diff: _Diff) -> None:
    if diff.inserts or diff.updates or diff.deletes:
        revision.inputs_changed(session)  # an unchanged re-report leaves cached plans valid
    bulk.insert(diff.inserts)
    bulk.update(diff.updates)
    bulk.delete(diff.deletes)


def lock_system(session: Session, system_id: str) -> None:
    """Check the system exists and serialise concurrent reports for it.

    On PostgreSQL the row lock makes two reports of one system run one after the other (their
    diffs would otherwise both insert the same snapshot); SQLite writers are already serial.
    """
    query = select(System.id).where(System.id == system_id).with_for_update(key_share=True)
    if session.execute(query).first() is None:
        raise NotFound("system", system_id)


def upsert_snapshots(
    session: Session, reported: Sequence[SnapshotFacts], now: datetime
) -> WriteCounts:
    """Insert or update every snapshot (each names its system); delete nothing."""
    by_system: dict[str, list[SnapshotFacts]] = {}
    for facts in reported:
        if facts.system_id is None:
            raise ValueError("every snapshot of an upsert names its system")
        by_system.setdefault(facts.system_id, []).append(facts)
    created = updated = unchanged = 0
    for system_id in sorted(by_system):  # lock in one order: no deadlock between batches
        lock_system(session, system_id)
    with closing(_Bulk(session)) as bulk:
        for system_id, items in by_system.items():
            stored = bulk.select(system_id, {facts.dataset for facts in items})
            diff = _diff(bulk, system_id, stored, items, now, full=False)
            _apply(session, bulk, diff)
            refresh_dataset_summaries(session, system_id, diff.touched, now)
            created += len(diff.inserts)
            updated += len(diff.updates)
            unchanged += diff.unchanged
    return WriteCounts(created=created, updated=updated, unchanged=unchanged)


def upsert_snapshot(session: Session, facts: SnapshotFacts, now: datetime) -> tuple[Snapshot, bool]:
    """Insert or update one snapshot; returns it and whether it was created."""
    counts = upsert_snapshots(session, [facts], now)
    snapshot = session.scalars(
        select(Snapshot).where(
            Snapshot.system_id == facts.system_id,
            Snapshot.dataset == facts.dataset,
            Snapshot.name == facts.name,
        )
    ).one()
    return snapshot, counts.created == 1


def replace_system_snapshots(
    session: Session,
    system_id: str,
    reported: Sequence[SnapshotFacts] | None,
    now: datetime,
    *,
    datasets: Sequence[DatasetFacts] | None = None,
    scope: Collection[str] | None = None,
) -> WriteCounts:
    """Make the stored state of ``system_id`` (within ``scope``) equal to the report.

    ``reported`` None leaves the snapshots alone, as ``datasets`` None leaves the dataset
    records. The snapshots' ``system_id`` is not looked at; the caller has checked that every
    snapshot and dataset lies within ``scope``.
    """
    lock_system(session, system_id)
    counts = WriteCounts()
    touched: set[str] = set()
    if reported is not None:
        with closing(_Bulk(session)) as bulk:
            stored = bulk.select(system_id, scope)
            diff = _diff(bulk, system_id, stored, reported, now, full=True)
            _apply(session, bulk, diff)
        counts = WriteCounts(
            len(diff.inserts), len(diff.updates), len(diff.deletes), diff.unchanged
        )
        touched |= diff.touched
    if datasets is not None:
        touched |= replace_datasets(session, system_id, datasets, now, scope=scope)
    # After a full report the stored snapshots of every touched dataset are the reported
    # ones: summarise those instead of reading them back.
    known = None
    if reported is not None:
        known = summarise((f.dataset, f.name, f.timestamp, f.createtxg) for f in reported)
    refresh_dataset_summaries(session, system_id, touched, now, known)
    return counts


def replace_datasets(
    session: Session,
    system_id: str,
    reported: Sequence[DatasetFacts],
    now: datetime,
    *,
    scope: Collection[str] | None = None,
) -> set[str]:
    """Make the system's dataset records (within ``scope``) equal to ``reported``.

    Returns the names added or removed (their summaries need refreshing: a removed dataset
    that still has snapshots comes back as an implied row).
    """
    columns = DATASETS.c
    query = select(columns.name, columns.id, columns.encryption, columns.receive_resume_token,
                   columns.reported)
    query = query.where(columns.system_id == system_id)
    if scope is not None:
        query = query.where(columns.name.in_(sorted(set(scope))))
    stored = {row[0]: (row[1], row[2], row[3], row[4]) for row in session.execute(query)}
    latest = {facts.name: facts for facts in reported}
    inserts = [facts for name, facts in latest.items() if name not in stored]
    changed = [
        {"b_id": stored[name][0], "b_encryption": facts.encryption,
         "b_receive_resume_token": facts.receive_resume_token, "b_updated_at": now,
         "b_reported": True}
        for name, facts in latest.items()
        if name in stored
        and stored[name][1:] != (facts.encryption, facts.receive_resume_token, True)
    ]
    gone_names = [name for name in stored if name not in latest]
    gone = [stored[name][0] for name in gone_names]
    if inserts or changed or gone:
        revision.inputs_changed(session)
    if inserts:
        session.execute(
            insert(DATASETS),
            [
                {"system_id": system_id, "name": f.name, "pool": pool_of(f.name),
                 "encryption": f.encryption, "receive_resume_token": f.receive_resume_token,
                 "updated_at": now, "reported": True, "snapshot_count": 0}
                for f in inserts
            ],
        )
    if changed:
        session.execute(
            update(DATASETS)
            .where(columns.id == _param("id"))
            .values({name: _param(name) for name in ("encryption", "receive_resume_token",
                                                     "updated_at", "reported")}),
            changed,
        )
    for start in range(0, len(gone), CHUNK):
        session.execute(delete(DATASETS).where(columns.id.in_(gone[start : start + CHUNK])))
    return {f.name for f in inserts} | set(gone_names)


def _param(column: str) -> Any:
    # Typed like the column, so that its conversions (UTCDateTime) apply to the values.
    return bindparam(f"b_{column}", type_=DATASETS.c[column].type)


def get_snapshot(session: Session, snapshot_id: str) -> Snapshot:
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        raise NotFound("snapshot", snapshot_id)
    return snapshot


def delete_snapshot(session: Session, snapshot_id: str, now: datetime) -> None:
    snapshot = get_snapshot(session, snapshot_id)
    system_id, dataset = snapshot.system_id, snapshot.dataset
    session.delete(snapshot)
    session.flush()
    refresh_dataset_summaries(session, system_id, [dataset], now)

