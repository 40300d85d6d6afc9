"""The planner's inputs and outputs: plain frozen dataclasses, no I/O.

Storage loads these from the database, the planner (``domain/planner.py``) turns them into a
``GroupPlan``, and the API, dashboard and metrics all read that same plan (one data path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING

from zfs_sync.domain.names import pool_of

if TYPE_CHECKING:
    from zfs_sync.domain.plan_history import History

# Capability flags an agent reports; a missing or non-True flag means "not supported".
COMPRESSED_SEND = "compressed_send"
RAW_SEND = "raw_send"
RESUMABLE_RECEIVE = "resumable_receive"
RECEIVE_O = "receive_o"


class SyncStatus(StrEnum):
    IN_SYNC = "in_sync"
    OUT_OF_SYNC = "out_of_sync"
    SYNCING = "syncing"
    ERROR = "error"
    CONFLICT = "conflict"


class ActionType(StrEnum):
    FULL_SEND = "full_send"
    INCREMENTAL_SEND = "incremental_send"
    ROLLBACK = "rollback"
    RENAME = "rename"


class ConflictType(StrEnum):
    TARGET_DIVERGED = "target_diverged"
    NO_COMMON_SNAPSHOT = "no_common_snapshot"
    GUID_MISMATCH = "guid_mismatch"  # same snapshot name, different guid
    NEWEST_TIE = "newest_tie"  # bidirectional: two different snapshots share the newest time


class ResolutionStrategy(StrEnum):
    ROLLBACK_TARGET = "rollback_target"
    RENAME_TARGET_ASIDE = "rename_target_aside"
    IGNORE = "ignore"
    MANUAL = "manual"


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotFact:
    """One reported snapshot of one dataset on one system."""

    name: str  # the part after '@'
    timestamp: datetime  # creation, aware UTC
    id: str = ""  # the witness's snapshot id
    guid: int | None = None  # unsigned 64-bit: may exceed 2**63
    createtxg: int | None = None
    size: int | None = None  # `used`
    referenced: int | None = None


@dataclass(frozen=True)
class SnapshotRef:
    """A snapshot named in a claim or a resolution: same identity rule as facts."""

    name: str
    guid: int | None = None


@dataclass(frozen=True)
class DatasetFacts:
    """A dataset one system reported, with its snapshots (possibly none)."""

    name: str  # full name, e.g. ``tank/data/vm1``
    encryption: bool = False
    received_raw: bool | None = None  # None = unknown (inferred from encryption)
    snapshots: tuple[SnapshotFact, ...] = ()

    @cached_property
    def history(self) -> History:
        """The snapshots in host order with identity lookups, built once per facts object
        (a source's history serves every target's edge)."""
        from zfs_sync.domain.plan_history import history

        return history(self.snapshots)


@dataclass(frozen=True)
class SystemFacts:
    system_id: str
    datasets: Mapping[str, DatasetFacts] = field(default_factory=lambda: MappingProxyType({}))

    def pools_with_snapshots(self) -> frozenset[str]:
        return frozenset(pool_of(d.name) for d in self.datasets.values() if d.snapshots)


def build_system_facts(
    system_id: str,
    snapshots: Iterable[tuple[str, SnapshotFact]],
    datasets: Iterable[DatasetFacts] = (),
) -> SystemFacts:
    """Merge dataset rows and ``(full dataset, snapshot)`` rows into one ``SystemFacts``.

    A dataset known only through its snapshots (the guide's scripts post no dataset rows)
    still exists; dataset rows without snapshots exist too.
    """
    by_dataset: dict[str, list[SnapshotFact]] = {}
    for dataset, snap in snapshots:
        by_dataset.setdefault(dataset, []).append(snap)
    merged = {d.name: d for d in datasets}
    for name in set(merged) | set(by_dataset):
        base = merged.get(name, DatasetFacts(name))
        extra = tuple(by_dataset.get(name, ()))
        merged[name] = DatasetFacts(
            name, base.encryption, base.received_raw, base.snapshots + extra
        )
    return SystemFacts(system_id, MappingProxyType(merged))


@dataclass(frozen=True)
class Member:
    system_id: str
    hostname: str
    root: str | None = None  # None: the host's only pool with snapshots
    online: bool = True  # computed by the caller from heartbeats
    ssh_hostname: str | None = None
    ssh_user: str | None = None
    ssh_port: int = 22
    zfs_path: str = "zfs"
    capabilities: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def supports(self, capability: str) -> bool:
        return self.capabilities.get(capability) is True


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    created_at: datetime
    enabled: bool = True
    sync_interval_seconds: int = 3600
    directional: bool = False
    hub_system_id: str | None = None
    datasets: tuple[str, ...] = ()  # logical dataset globs; empty = all
    snapshot_pattern: str = ""  # glob on snapshot names; empty = all
    allow_rollback: bool = False


@dataclass(frozen=True)
class Claim:
    """The agent's last report for an edge (``POST /sync/states``)."""

    status: SyncStatus
    claimed_at: datetime
    error_message: str | None = None
    snapshot: SnapshotRef | None = None  # the source snapshot the action delivered
    # The target's newest snapshot of the dataset when the claim was recorded (None: it had
    # none): a `syncing` claim holds only while this is still the target's newest.
    target_newest_at_claim: SnapshotRef | None = None


@dataclass(frozen=True)
class PriorState:
    """What storage remembers about one (group, logical dataset, target)."""

    dataset: str
    target_system_id: str
    status: SyncStatus | None = None  # the last derived status (informational: re-derived)
    claim: Claim | None = None
    last_sync: datetime | None = None  # persist EdgeState.last_sync here after each plan
    last_transfer_bytes: int | None = None
    last_transfer_seconds: float | None = None


@dataclass(frozen=True)
class Resolution:
    """An admin's decision on a conflict of this group."""

    dataset: str
    target_system_id: str
    conflict_type: ConflictType
    strategy: ResolutionStrategy
    # rollback_target: the target snapshots the admin agreed to discard.
    allowed_discard: tuple[SnapshotRef, ...] = ()


# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One instruction for a target, with exactly the fields of DESIGN.md section 7."""

    action_id: str
    action_type: ActionType
    sync_group_id: str
    dataset: str  # logical
    source_system_id: str
    target_system_id: str
    source_pool: str
    source_dataset: str
    target_pool: str
    target_dataset: str
    snapshot_name: str | None
    snapshot_id: str | None  # the SOURCE snapshot the action delivers
    incremental_base: str | None  # the base's name on the source
    is_incremental: bool
    include_intermediate: bool
    rollback_to_base: bool
    estimated_size: int | None
    priority: int  # lower runs first: 1 = the edge is late, 2 = normal
    sequence: int  # from 1 per (target, logical dataset)
    source_ssh_hostname: str | None
    source_ssh_user: str | None
    source_ssh_port: int
    pipeline: tuple[tuple[str, ...], ...]
    sync_command: str | None
    reason: str | None


@dataclass(frozen=True)
class ConflictDetails:
    """What each side has and what a resolution would do (stored as JSON via ``as_dict``)."""

    message: str
    source_newest: str | None = None
    target_newest: str | None = None
    base: str | None = None
    target_only: tuple[str, ...] = ()  # target snapshots newer than the base the source lacks
    would_discard: tuple[SnapshotRef, ...] = ()  # what rollback_target destroys
    rename_to: str | None = None  # where rename_target_aside moves the target's dataset
    mismatched: tuple[str, ...] = ()  # names whose guids differ between the two sides
    tied: tuple[tuple[str, str], ...] = ()  # (system_id, snapshot) sharing the newest time

    def as_dict(self) -> dict[str, object]:
        return {
            "message": self.message,
            "source_newest": self.source_newest,
            "target_newest": self.target_newest,
            "base": self.base,
            "target_only": list(self.target_only),
            "would_discard": [
                {"name": r.name, "guid": None if r.guid is None else str(r.guid)}
                for r in self.would_discard
            ],
            "rename_to": self.rename_to,
            "mismatched": list(self.mismatched),
            "tied": [{"system_id": s, "snapshot": n} for s, n in self.tied],
        }


@dataclass(frozen=True)
class Conflict:
    sync_group_id: str
    dataset: str
    target_system_id: str
    conflict_type: ConflictType
    source_system_id: str | None
    details: ConflictDetails
    resolution: ResolutionStrategy | None = None  # the recorded resolution, if any
    planned: bool = False  # this plan's actions resolve it (allow_rollback or a resolution)
    reopened: bool = False  # a resolution exists but the facts moved past what it allowed


@dataclass(frozen=True)
class EdgeState:
    """The derived SyncState of one (group, logical dataset, target)."""

    sync_group_id: str
    dataset: str
    target_system_id: str
    status: SyncStatus
    source_system_id: str | None
    source_dataset: str | None
    target_dataset: str | None
    latest_snapshot: str | None  # newest eligible snapshot on the target
    lag_seconds: int
    late: bool
    reason: str | None = None
    error_message: str | None = None
    last_sync: datetime | None = None
    last_transfer_bytes: int | None = None
    last_transfer_seconds: float | None = None
    # Creation time of the oldest snapshot the target is owed (None: owes nothing): the lag
    # is ``now - owed_since``, so a plan can be re-read later with its lag brought forward.
    owed_since: datetime | None = None


@dataclass(frozen=True)
class ReplicationEdge:
    """Which snapshots an edge depends on: the retention guard's input."""

    sync_group_id: str
    dataset: str
    source_system_id: str
    source_dataset: str
    target_system_id: str
    target_dataset: str
    base_on_source: SnapshotFact | None
    base_on_target: SnapshotFact | None
    owed: tuple[SnapshotFact, ...]  # source snapshots the target still lacks


@dataclass(frozen=True)
class GroupPlan:
    group: Group
    actions: tuple[Action, ...]  # run order: per target, parents first, then sequence
    states: tuple[EdgeState, ...]
    conflicts: tuple[Conflict, ...]
    edges: tuple[ReplicationEdge, ...]
    reason: str | None = None  # why the group plans nothing at all (e.g. no hub)

    def actions_for(self, target_system_id: str) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.target_system_id == target_system_id)

    def for_target(self, target_system_id: str) -> GroupPlan:
        """The part of the plan about edges into ``target_system_id``."""
        t = target_system_id
        return GroupPlan(
            self.group,
            tuple(a for a in self.actions if a.target_system_id == t),
            tuple(s for s in self.states if s.target_system_id == t),
            tuple(c for c in self.conflicts if c.target_system_id == t),
            tuple(e for e in self.edges if e.target_system_id == t),
            self.reason,
        )
