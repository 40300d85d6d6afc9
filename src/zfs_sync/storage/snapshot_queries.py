"""Reading snapshots: filtered lists, a system's history and statistics, and comparisons of
logical datasets across systems (differences between two, gaps against the union).

Identity across systems follows DESIGN.md §8: two snapshots are the same when their guids are
equal; when either lacks a guid, when their names are equal; the same name with different guids
is a divergence. ``compare`` and ``union_gaps`` are pure functions over lists of snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from zfs_sync.domain.names import join_dataset, logical_dataset
from zfs_sync.storage.common import Conflict, NotFound, Page
from zfs_sync.storage.models import Snapshot, System
from zfs_sync.storage.roots import system_roots

NEWEST_FIRST = (Snapshot.timestamp.desc(), Snapshot.dataset, Snapshot.name, Snapshot.id)


class RootUnknown(Conflict):
    def __init__(self, system_id: str) -> None:
        super().__init__(f"the root of system {system_id} is not known")
        self.system_id = system_id


def root_of(session: Session, system_id: str) -> str | None:
    return system_roots(session, [system_id])[system_id]


def require_systems(session: Session, system_ids: Iterable[str]) -> None:
    wanted = set(system_ids)
    found = set(session.scalars(select(System.id).where(System.id.in_(sorted(wanted)))))
    for system_id in sorted(wanted - found):
        raise NotFound("system", system_id)


@dataclass(frozen=True)
class SnapshotFilter:
    system_id: str | None = None
    pool: str | None = None
    dataset: str | None = None
    logical_dataset: str | None = None
    name: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _paged(session: Session, query: Select[Any], limit: int, offset: int) -> Page[Snapshot]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*NEWEST_FIRST).limit(limit).offset(offset))
    return Page(list(rows), total)


def _in_logical(session: Session, logical: str, system_id: str | None) -> ColumnElement[bool]:
    """Rows of ``logical`` on every system whose root is known (or on ``system_id``)."""
    ids = [system_id] if system_id else list(session.scalars(select(System.id)))
    clauses = [
        and_(Snapshot.system_id == sid, Snapshot.dataset == join_dataset(root, logical))
        for sid, root in system_roots(session, ids).items()
        if root is not None
    ]
    return or_(*clauses) if clauses else false()


def list_snapshots(
    session: Session, where: SnapshotFilter, limit: int = 100, offset: int = 0
) -> Page[Snapshot]:
    """Snapshots matching every filter given, newest first."""
    query = select(Snapshot)
    for column, value in (
        (Snapshot.system_id, where.system_id),
        (Snapshot.pool, where.pool),
        (Snapshot.dataset, where.dataset),
        (Snapshot.name, where.name),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(Snapshot.timestamp >= where.since)
    if where.until is not None:
        query = query.where(Snapshot.timestamp <= where.until)
    if where.logical_dataset is not None:
        query = query.where(_in_logical(session, where.logical_dataset, where.system_id))
    return _paged(session, query, limit, offset)


def history(
    session: Session,
    system_id: str,
    since: datetime,
    dataset: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[Snapshot]:
    """The system's snapshots created since ``since``, newest first."""
    require_systems(session, [system_id])
    return list_snapshots(
        session, SnapshotFilter(system_id=system_id, dataset=dataset, since=since), limit, offset
    )


@dataclass(frozen=True)
class DatasetStats:
    dataset: str
    count: int
    total_size: int
    oldest: datetime
    newest: datetime


@dataclass(frozen=True)
class Statistics:
    system_id: str
    period_start: datetime
    datasets: list[DatasetStats]
    snapshots_in_period: int
    size_in_period: int

    @property
    def total_snapshots(self) -> int:
        return sum(stats.count for stats in self.datasets)

    @property
    def total_size(self) -> int:
        return sum(stats.total_size for stats in self.datasets)

    @property
    def oldest(self) -> datetime | None:
        return min((stats.oldest for stats in self.datasets), default=None)

    @property
    def newest(self) -> datetime | None:
        return max((stats.newest for stats in self.datasets), default=None)


def statistics(session: Session, system_id: str, since: datetime) -> Statistics:
    require_systems(session, [system_id])
    size = func.coalesce(func.sum(Snapshot.size), 0)
    per_dataset = session.execute(
        select(
            Snapshot.dataset, func.count(), size, func.min(Snapshot.timestamp),
            func.max(Snapshot.timestamp),
        )
        .where(Snapshot.system_id == system_id)
        .group_by(Snapshot.dataset)
        .order_by(Snapshot.dataset)
    )
    datasets = [
        DatasetStats(dataset, count, int(total or 0), oldest, newest)
        for dataset, count, total, oldest, newest in per_dataset
    ]
    count, total = session.execute(
        select(func.count(), size).where(
            Snapshot.system_id == system_id, Snapshot.timestamp >= since
        )
    ).one()
    return Statistics(system_id, since, datasets, count, int(total or 0))


# -- comparing logical datasets -------------------------------------------------------------


@dataclass(frozen=True)
class SnapRef:
    name: str
    guid: int | None
    timestamp: datetime


@dataclass
class Comparison:
    only_1: list[SnapRef] = field(default_factory=list)
    only_2: list[SnapRef] = field(default_factory=list)
    common: int = 0
    diverged: list[tuple[SnapRef, SnapRef]] = field(default_factory=list)


def compare(side_1: Sequence[SnapRef], side_2: Sequence[SnapRef]) -> Comparison:
    """Which snapshots of one dataset only one side has, which both have, which diverged."""
    by_guid = {snap.guid: snap for snap in side_2 if snap.guid is not None}
    by_name = {snap.name: snap for snap in side_2}
    matched: set[int] = set()
    result = Comparison()
    for snap in side_1:
        other = by_guid.get(snap.guid) if snap.guid is not None else None
        if other is None or id(other) in matched:
            other = by_name.get(snap.name)
            if other is None or id(other) in matched:
                result.only_1.append(snap)
                continue
            if snap.guid is not None and other.guid is not None and other.guid != snap.guid:
                matched.add(id(other))
                result.diverged.append((snap, other))
                continue
        matched.add(id(other))
        result.common += 1
    result.only_2 = [snap for snap in side_2 if id(snap) not in matched]
    return result


@dataclass
class UnionEntry:
    snapshot: SnapRef
    holders: set[str] = field(default_factory=set)


def union_gaps(holdings: Mapping[str, Sequence[SnapRef]]) -> list[UnionEntry]:
    """The union of every system's snapshots of one dataset, each with the systems holding it."""
    entries: list[UnionEntry] = []
    by_guid: dict[int, UnionEntry] = {}
    by_name: dict[str, list[UnionEntry]] = {}
    for system_id in sorted(holdings):
        for snap in holdings[system_id]:
            entry = by_guid.get(snap.guid) if snap.guid is not None else None
            if entry is None:
                entry = next(
                    (e for e in by_name.get(snap.name, ())
                     if e.snapshot.guid is None or snap.guid is None),
                    None,
                )
            if entry is None:
                entry = UnionEntry(snap)
                entries.append(entry)
                by_name.setdefault(snap.name, []).append(entry)
            elif entry.snapshot.guid is None and snap.guid is not None:
                entry.snapshot = snap  # the guid makes the entry identifiable from now on
            if snap.guid is not None:
                by_guid.setdefault(snap.guid, entry)
            entry.holders.add(system_id)
    entries.sort(key=lambda e: (e.snapshot.timestamp, e.snapshot.name))
    return entries


def _refs(
    session: Session, system_id: str, datasets: ColumnElement[bool]
) -> dict[str, list[SnapRef]]:
    rows = session.execute(
        select(Snapshot.dataset, Snapshot.name, Snapshot.guid, Snapshot.timestamp)
        .where(Snapshot.system_id == system_id, datasets)
        .order_by(Snapshot.dataset, Snapshot.timestamp, Snapshot.name)
    )
    found: dict[str, list[SnapRef]] = {}
    for dataset, name, guid, timestamp in rows:
        found.setdefault(dataset, []).append(SnapRef(name, guid, timestamp))
    return found


def _known_roots(session: Session, system_ids: Sequence[str]) -> dict[str, str | None]:
    """The roots of systems named in a request: None for a system without any snapshots
    (it holds nothing), ``RootUnknown`` when it has snapshots but no root can be told."""
    require_systems(session, system_ids)
    roots = system_roots(session, system_ids)
    unknown = [system_id for system_id in system_ids if roots[system_id] is None]
    if unknown:
        holding = set(
            session.scalars(
                select(Snapshot.system_id).where(Snapshot.system_id.in_(unknown)).distinct()
            )
        )
        for system_id in unknown:
            if system_id in holding:
                raise RootUnknown(system_id)
    return roots


def _logical_refs(
    session: Session, system_id: str, root: str | None, logical: str | None
) -> dict[str, list[SnapRef]]:
    """The system's snapshots by logical dataset (only ``logical`` when given)."""
    if root is None:
        return {}
    if logical is not None:
        where = Snapshot.dataset == join_dataset(root, logical)
    else:
        under = Snapshot.dataset.startswith(root + "/", autoescape=True)
        where = or_(Snapshot.dataset == root, under)
    by_dataset = _refs(session, system_id, where)
    return {logical_dataset(dataset, root) or "": refs for dataset, refs in by_dataset.items()}


@dataclass(frozen=True)
class DatasetDifference:
    logical_dataset: str
    dataset_1: str | None
    dataset_2: str | None
    comparison: Comparison


@dataclass(frozen=True)
class Differences:
    roots: tuple[str | None, str | None]
    datasets: list[DatasetDifference]


def differences(
    session: Session, system_id_1: str, system_id_2: str, logical: str | None = None
) -> Differences:
    roots = _known_roots(session, [system_id_1, system_id_2])
    root_1, root_2 = roots[system_id_1], roots[system_id_2]
    side_1 = _logical_refs(session, system_id_1, root_1, logical)
    side_2 = _logical_refs(session, system_id_2, root_2, logical)
    found = []
    for name in sorted(side_1.keys() | side_2.keys()):
        found.append(
            DatasetDifference(
                name,
                join_dataset(root_1, name) if root_1 is not None and name in side_1 else None,
                join_dataset(root_2, name) if root_2 is not None and name in side_2 else None,
                compare(side_1.get(name, []), side_2.get(name, [])),
            )
        )
    return Differences((root_1, root_2), found)


@dataclass(frozen=True)
class SystemGap:
    system_id: str
    root: str | None  # None: the system has no snapshots at all
    snapshot_count: int
    missing: list[SnapRef]


@dataclass(frozen=True)
class GapReport:
    union_count: int
    systems: list[SystemGap]


def _holdings(
    session: Session, logical: str, roots: dict[str, str | None]
) -> dict[str, list[SnapRef]]:
    """Each system's snapshots of ``logical`` (one query for all of them)."""
    found: dict[str, list[SnapRef]] = {system_id: [] for system_id in roots}
    clauses = [
        and_(Snapshot.system_id == sid, Snapshot.dataset == join_dataset(root, logical))
        for sid, root in roots.items()
        if root is not None
    ]
    if not clauses:
        return found
    where = or_(*clauses)
    rows = session.execute(
        select(Snapshot.system_id, Snapshot.name, Snapshot.guid, Snapshot.timestamp)
        .where(where)
        .order_by(Snapshot.system_id, Snapshot.timestamp, Snapshot.name)
    )
    for system_id, name, guid, timestamp in rows:
        found[system_id].append(SnapRef(name, guid, timestamp))
    return found


def gaps(session: Session, logical: str, system_ids: Sequence[str] | None = None) -> GapReport:
    """What each system lacks of ``logical`` compared to the union of all of them.

    Without ``system_ids``: every system whose root is known and that holds the dataset.
    """
    if system_ids:
        roots = _known_roots(session, list(dict.fromkeys(system_ids)))
        holdings = _holdings(session, logical, roots)
    else:
        every = system_roots(session, list(session.scalars(select(System.id))))
        roots = {sid: root for sid, root in every.items() if root is not None}
        holdings = {sid: refs for sid, refs in _holdings(session, logical, roots).items() if refs}
    union = union_gaps(holdings)
    systems = [
        SystemGap(
            sid,
            roots[sid],
            len(holdings[sid]),
            [entry.snapshot for entry in union if sid not in entry.holders],
        )
        for sid in sorted(holdings)
    ]
    return GapReport(len(union), systems)
