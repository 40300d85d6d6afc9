"""Load the planner's inputs from the database, cheaply.

The planner (``domain/planner.py``) is a pure function of whole snapshot histories. Loading
whole histories would read every snapshot of every member (millions at fleet scale), so this
module loads a *window*: for each logical dataset of a group, the snapshots created since the
oldest of its members' newest snapshots (minus a margin). For an edge whose target's newest
snapshot also exists on the source (the usual case, in sync or behind) that window holds
everything the rules look at: the base, what is owed, the newest on each side.
``planning.py`` re-plans with whole histories the few datasets where that is not so (a
target lacking the dataset, a conflict, no base in the window).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zfs_sync.config import Settings
from zfs_sync.domain import plan_types as pt
from zfs_sync.domain.health import HealthStatus, system_health
from zfs_sync.domain.names import logical_dataset
from zfs_sync.domain.planner import GroupInputs
from zfs_sync.storage.models import (
    ConflictRecord,
    Dataset,
    GroupMember,
    SyncGroup,
    SyncState,
    System,
)
from zfs_sync.storage.snapshots import timestamp_binder
from zfs_sync.storage.types import guid_from_db

WINDOW_MARGIN = timedelta(days=1)  # creation times of one snapshot may differ by report form
# Pairs per statement: 3 parameters each, well under SQLite's 32766.
PAIR_CHUNK = 2000
# The cut of a pair whose whole history is wanted (``None`` in the cut map).
EVERYTHING = datetime(1, 1, 1, tzinfo=timezone.utc)
Pair = tuple[str, str]  # (system_id, full dataset)
# The summary columns planning reads, as rows rather than ORM objects (thousands per plan).
_DATASET_COLUMNS = [
    Dataset.__table__.c[name]
    for name in (
        "system_id", "name", "pool", "encryption", "snapshot_count", "newest_timestamp",
    )
]
DatasetRow = Any  # a row of _DATASET_COLUMNS
EdgeKey = tuple[str, str]  # (group_id, logical dataset)


@dataclass
class Loaded:
    """Planner inputs plus what is needed to tell whether a window was enough."""

    inputs: list[GroupInputs]
    truncated: set[Pair] = field(default_factory=set)  # windows shorter than the history
    pairs: dict[EdgeKey, set[Pair]] = field(default_factory=dict)
    # The first moment a member now online counts as offline (its heartbeat timeout ends).
    offline_at: datetime | None = None


def to_group(row: SyncGroup) -> pt.Group:
    return pt.Group(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        enabled=row.enabled,
        sync_interval_seconds=row.sync_interval_seconds,
        directional=row.directional,
        hub_system_id=row.hub_system_id,
        datasets=tuple(row.datasets or ()),
        snapshot_pattern=row.snapshot_pattern or "",
        allow_rollback=row.allow_rollback,
    )


def _timeout(system: System, settings: Settings) -> int:
    return system.heartbeat_timeout_seconds or settings.heartbeat_timeout_seconds


def to_member(system: System, root: str | None, settings: Settings, now: datetime) -> pt.Member:
    online = (
        system_health(system.last_seen, _timeout(system, settings), now).status
        is HealthStatus.ONLINE
    )
    return pt.Member(
        system_id=system.id,
        hostname=system.hostname,
        root=root or None,
        online=online,
        ssh_hostname=system.ssh_hostname,
        ssh_user=system.ssh_user,
        ssh_port=system.ssh_port,
        zfs_path=system.zfs_path,
        capabilities=dict(system.capabilities or {}),
    )


def groups_for(
    session: Session,
    group_ids: Collection[str] | None = None,
    member: str | None = None,
    *,
    related: bool = True,
) -> list[SyncGroup]:
    """Groups by id, or those ``member`` belongs to, plus (``related``) every enabled group
    sharing a member with them: their overlaps decide which group owns an edge."""
    query = select(SyncGroup)
    if group_ids is not None:
        query = query.where(SyncGroup.id.in_(list(group_ids)))
    if member is not None:
        mine = select(GroupMember.group_id).where(GroupMember.system_id == member)
        query = query.where(SyncGroup.id.in_(mine))
    chosen = list(session.scalars(query))
    if not chosen or not related:
        return sorted(chosen, key=lambda g: (g.created_at, g.id))
    systems = select(GroupMember.system_id).where(GroupMember.group_id.in_([g.id for g in chosen]))
    sharing = select(GroupMember.group_id).where(GroupMember.system_id.in_(systems))
    extra = session.scalars(
        select(SyncGroup).where(SyncGroup.id.in_(sharing), SyncGroup.enabled.is_(True))
    )
    by_id = {g.id: g for g in chosen} | {g.id: g for g in extra}
    return sorted(by_id.values(), key=lambda g: (g.created_at, g.id))


def _memberships(
    session: Session, groups: Sequence[SyncGroup]
) -> dict[str, list[tuple[GroupMember, System]]]:
    rows = session.execute(
        select(GroupMember, System)
        .join(System, System.id == GroupMember.system_id)
        .where(GroupMember.group_id.in_([g.id for g in groups]))
    )
    found: dict[str, list[tuple[GroupMember, System]]] = defaultdict(list)
    for member, system in rows:
        found[member.group_id].append((member, system))
    return found


def _default_root(datasets: Iterable[DatasetRow]) -> str | None:
    pools = {d.pool for d in datasets if d.snapshot_count}
    return next(iter(pools)) if len(pools) == 1 else None


def _cutoffs(
    groups: Sequence[SyncGroup],
    members: Mapping[str, list[tuple[GroupMember, System]]],
    datasets: Mapping[str, list[DatasetRow]],
    full: Collection[EdgeKey],
) -> tuple[dict[Pair, datetime | None], dict[EdgeKey, set[Pair]]]:
    """Per (system, dataset): load snapshots since this time (None: the whole history)."""
    cut: dict[Pair, datetime | None] = {}
    pairs: dict[EdgeKey, set[Pair]] = defaultdict(set)
    for group in groups:
        newest: dict[str, list[datetime]] = defaultdict(list)
        for member, system in members.get(group.id, []):
            root = member.root or _default_root(datasets.get(system.id, []))
            for row in datasets.get(system.id, []):
                logical = logical_dataset(row.name, root) if root else None
                if logical is None or not row.snapshot_count:
                    continue
                pairs[(group.id, logical)].add((system.id, row.name))
                if row.newest_timestamp is not None:
                    newest[logical].append(row.newest_timestamp)
        for key, pair_set in pairs.items():
            if key[0] != group.id:
                continue
            times = newest[key[1]]
            since = None if key in full or not times else min(times) - WINDOW_MARGIN
            for pair in pair_set:
                if pair not in cut or since is None:
                    cut[pair] = since
                elif cut[pair] is not None:
                    cut[pair] = min(cut[pair], since)  # type: ignore[type-var]
    # Every dataset holding snapshots shows at least its newest one, so that the planner's
    # default root ("the host's only pool with snapshots") sees every pool of the host.
    for rows in datasets.values():
        for row in rows:
            pair = (row.system_id, row.name)
            if row.snapshot_count and pair not in cut and row.newest_timestamp is not None:
                cut[pair] = row.newest_timestamp
    return cut, pairs


def _load_snapshots(
    session: Session, cut: Mapping[Pair, datetime | None]
) -> dict[Pair, list[pt.SnapshotFact]]:
    """Each pair's snapshots from its cut on, in one query per chunk of pairs.

    The pairs and their cuts go in as a VALUES list joined to ``snapshots``, so that the
    window index answers each pair by range. Like the ingest path (``storage/snapshots.py``)
    this runs on the driver's cursor with values in their stored form: SQLAlchemy's
    statement compilation and per-value processing cost more than the query itself here.
    """
    found: dict[Pair, list[pt.SnapshotFact]] = defaultdict(list)
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    stored_time = timestamp_binder(connection.dialect)
    wanted = [
        (system, dataset, stored_time(since or EVERYTHING))
        for (system, dataset), since in cut.items()
    ]
    # Copies of one snapshot on many hosts share its creation time: convert each value once.
    times: dict[datetime | str, datetime] = {}
    cursor = connection.connection.cursor()
    try:
        for start in range(0, len(wanted), PAIR_CHUNK):
            chunk = wanted[start : start + PAIR_CHUNK]
            rows = ", ".join([f"({mark}, {mark}, {mark})"] * len(chunk))
            cursor.execute(_WINDOW_SQL.format(rows=rows), [v for row in chunk for v in row])
            for sid, dataset, ident, name, guid, txg, ts, size, referenced in cursor.fetchall():
                moment = times.get(ts)
                if moment is None:
                    moment = times[ts] = _utc(ts)
                found[(sid, dataset)].append(
                    pt.SnapshotFact(name, moment, ident, guid_from_db(guid), txg, size, referenced)
                )
    finally:
        cursor.close()
    return found


def _utc(value: datetime | str) -> datetime:
    """A stored naive-UTC time (a string in SQLite) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc)


_WINDOW_SQL = (
    "WITH window_cut (system_id, dataset, since) AS (VALUES {rows}) "
    "SELECT s.system_id, s.dataset, s.id, s.name, s.guid, s.createtxg, s.timestamp, s.size, "
    "s.referenced FROM snapshots AS s JOIN window_cut AS w ON s.system_id = w.system_id "
    "AND s.dataset = w.dataset AND s.timestamp >= w.since"
)


_PRIOR_COLUMNS = [
    SyncState.__table__.c[name]
    for name in (
        "sync_group_id", "dataset", "target_system_id", "status", "claim_status", "claim_at",
        "claim_error", "claim_snapshot_name", "claim_snapshot_guid", "claim_target_newest_name",
        "claim_target_newest_guid", "last_sync", "last_transfer_bytes", "last_transfer_seconds",
    )
]


def _priors(
    session: Session, groups: Sequence[SyncGroup], only_target: str | None
) -> dict[str, list[pt.PriorState]]:
    """Stored states of the groups (columns, not ORM objects: thousands at fleet scale).

    With ``only_target``, a directional group plans that member's edges alone: only their
    states are read.
    """
    found: dict[str, list[pt.PriorState]] = defaultdict(list)
    everything = [g.id for g in groups if only_target is None or not g.directional]
    only = [g.id for g in groups if only_target is not None and g.directional]
    queries = []
    if everything:
        queries.append(select(*_PRIOR_COLUMNS).where(SyncState.sync_group_id.in_(everything)))
    if only:
        queries.append(
            select(*_PRIOR_COLUMNS).where(
                SyncState.sync_group_id.in_(only), SyncState.target_system_id == only_target
            )
        )
    for query in queries:
        for row in session.execute(query):
            found[row.sync_group_id].append(to_prior(row))
    return found


def to_prior(row: Any) -> pt.PriorState:
    """A ``SyncState`` (or a row of its columns) as the planner's ``PriorState``."""
    claim = None
    if row.claim_status and row.claim_at:
        snapshot = (
            pt.SnapshotRef(row.claim_snapshot_name, row.claim_snapshot_guid)
            if row.claim_snapshot_name
            else None
        )
        newest = (
            pt.SnapshotRef(row.claim_target_newest_name, row.claim_target_newest_guid)
            if row.claim_target_newest_name
            else None
        )
        claim = pt.Claim(
            pt.SyncStatus(row.claim_status), row.claim_at, row.claim_error, snapshot, newest
        )
    return pt.PriorState(
        dataset=row.dataset,
        target_system_id=row.target_system_id,
        status=pt.SyncStatus(row.status) if row.status else None,
        claim=claim,
        last_sync=row.last_sync,
        last_transfer_bytes=row.last_transfer_bytes,
        last_transfer_seconds=row.last_transfer_seconds,
    )


def _resolutions(session: Session, group_ids: Sequence[str]) -> dict[str, list[pt.Resolution]]:
    found: dict[str, list[pt.Resolution]] = defaultdict(list)
    query = select(ConflictRecord).where(
        ConflictRecord.sync_group_id.in_(group_ids),
        ConflictRecord.resolution.is_not(None),
        ConflictRecord.applied.is_(False),
    )
    for row in session.scalars(query):
        allowed = tuple(
            pt.SnapshotRef(item["name"], int(item["guid"]) if item.get("guid") else None)
            for item in row.allowed_discard or []
        )
        found[row.sync_group_id].append(
            pt.Resolution(
                row.dataset,
                row.target_system_id,
                pt.ConflictType(row.type),
                pt.ResolutionStrategy(row.resolution or ""),
                allowed,
            )
        )
    return found


def load_inputs(
    session: Session,
    groups: Sequence[SyncGroup],
    settings: Settings,
    now: datetime,
    *,
    full: Collection[EdgeKey] = (),
    only_target: str | None = None,
    whole: bool = False,
) -> Loaded:
    """Everything the planner needs for ``groups``; windows unless ``full`` names the edge.

    ``whole``: no windows at all (the reference the windows are tested against).

    ``only_target``: plan just that member's edges (directional groups then need only the
    hub and that member; bidirectional groups still need every member to pick sources).
    """
    members = _memberships(session, groups)
    if only_target is not None:
        members = {gid: _only(rows, groups, gid, only_target) for gid, rows in members.items()}
    system_ids = {system.id for rows in members.values() for _, system in rows}
    datasets: dict[str, list[DatasetRow]] = defaultdict(list)
    if system_ids:
        query = select(*_DATASET_COLUMNS).where(Dataset.system_id.in_(system_ids))
        for row in session.execute(query):
            datasets[row.system_id].append(row)
    cut, pairs = _cutoffs(groups, members, datasets, set(full))
    if whole:
        cut = dict.fromkeys(cut)
    windows = _load_snapshots(session, cut)
    counts = {(d.system_id, d.name): d.snapshot_count for rows in datasets.values() for d in rows}
    truncated = {pair for pair in cut if len(windows.get(pair, ())) < counts.get(pair, 0)}
    facts = {
        system_id: pt.build_system_facts(
            system_id,
            [(d.name, s) for d in rows for s in windows.get((system_id, d.name), ())],
            [pt.DatasetFacts(d.name, d.encryption) for d in rows],
        )
        for system_id, rows in datasets.items()
    }
    group_ids = [g.id for g in groups]
    priors = _priors(session, groups, only_target)
    resolutions = _resolutions(session, group_ids)
    inputs = [
        GroupInputs(
            to_group(g),
            [to_member(system, m.root, settings, now) for m, system in members.get(g.id, [])],
            {
                sid: facts[sid]
                for _, system in members.get(g.id, [])
                for sid in [system.id]
                if sid in facts
            },
            priors.get(g.id, []),
            resolutions.get(g.id, []),
        )
        for g in groups
    ]
    return Loaded(inputs, truncated, dict(pairs), _offline_at(members, settings, now))


def _offline_at(
    members: Mapping[str, list[tuple[GroupMember, System]]], settings: Settings, now: datetime
) -> datetime | None:
    """Offline strictly after ``last_seen + timeout`` (``domain/health.py``)."""
    moments = [
        system.last_seen + timedelta(seconds=_timeout(system, settings), microseconds=1)
        for rows in members.values()
        for _, system in rows
        if system.last_seen is not None
    ]
    return min((m for m in moments if m > now), default=None)


def _only(
    rows: list[tuple[GroupMember, System]],
    groups: Sequence[SyncGroup],
    group_id: str,
    target: str,
) -> list[tuple[GroupMember, System]]:
    group = next(g for g in groups if g.id == group_id)
    if not group.directional:
        return rows
    keep = {target, group.hub_system_id}
    return [(m, s) for m, s in rows if s.id in keep]
