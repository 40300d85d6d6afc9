"""Snapshot identity and order: one host's history of one dataset, and eligibility.

Identity (DESIGN.md section 8): two snapshots are the same when their guids are equal; when
either lacks a guid, when their names are equal. Order within one host: createtxg, else
creation time, else name. Across hosts only creation time is comparable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from zfs_sync.domain.plan_types import SnapshotFact, SnapshotRef


def same_snapshot(a: SnapshotFact | SnapshotRef, b: SnapshotFact | SnapshotRef) -> bool:
    """Equal guids when both have one, else equal names (DESIGN.md section 8)."""
    if a.guid is not None and b.guid is not None:
        return a.guid == b.guid
    return a.name == b.name


def host_order(snapshots: Iterable[SnapshotFact]) -> tuple[SnapshotFact, ...]:
    """Order within one host: createtxg, else creation time, else name."""
    snaps = list(snapshots)
    if all(s.createtxg is not None for s in snaps):
        return tuple(sorted(snaps, key=lambda s: (s.createtxg, s.timestamp, s.name)))
    # txgs are not comparable with times, so one missing txg puts the whole list on times.
    return tuple(sorted(snaps, key=lambda s: (s.timestamp, s.name)))


@dataclass(frozen=True)
class History:
    """One host's snapshots of one dataset, oldest first, with identity lookups."""

    ordered: tuple[SnapshotFact, ...]
    by_guid: Mapping[int, SnapshotFact] = field(repr=False)
    by_name: Mapping[str, SnapshotFact] = field(repr=False)
    # Position of each snapshot object of ``ordered`` (by identity: comparing the dataclasses
    # field by field costs more than the whole lookup).
    positions: Mapping[int, int] = field(repr=False, compare=False)

    def find(self, other: SnapshotFact | SnapshotRef) -> SnapshotFact | None:
        """The same snapshot here: equal guids, or equal names when either lacks a guid."""
        if other.guid is not None and other.guid in self.by_guid:
            return self.by_guid[other.guid]
        mine = self.by_name.get(other.name)
        if mine is not None and (mine.guid is None or other.guid is None):
            return mine
        return None

    def mismatch(self, other: SnapshotFact) -> SnapshotFact | None:
        """A snapshot here with ``other``'s name but a different guid (a divergence)."""
        mine = self.by_name.get(other.name)
        if mine is None or mine.guid is None or other.guid is None:
            return None
        return mine if mine.guid != other.guid else None

    def after(self, snap: SnapshotFact | None) -> tuple[SnapshotFact, ...]:
        """The snapshots after ``snap``, one of this history's own (None: all of them)."""
        if snap is None:
            return self.ordered
        return self.ordered[self.position(snap) + 1 :]

    def position(self, snap: SnapshotFact) -> int:
        found = self.positions.get(id(snap))
        if found is None or self.ordered[found] is not snap:
            return self.ordered.index(snap)  # an equal snapshot from elsewhere
        return found

    @property
    def newest(self) -> SnapshotFact | None:
        return self.ordered[-1] if self.ordered else None


def history(snapshots: Iterable[SnapshotFact]) -> History:
    ordered = host_order(snapshots)
    by_guid = {s.guid: s for s in ordered if s.guid is not None}
    positions = {id(s): i for i, s in enumerate(ordered)}
    return History(ordered, by_guid, {s.name: s for s in ordered}, positions)


def eligible(snapshots: Iterable[SnapshotFact], pattern: str) -> tuple[SnapshotFact, ...]:
    return tuple(s for s in snapshots if not pattern or fnmatchcase(s.name, pattern))


def dataset_matches(logical: str, globs: Sequence[str]) -> bool:
    # fnmatch's '*' also matches '/', so "data/*" covers the whole tree below data.
    return not globs or any(fnmatchcase(logical, g) for g in globs)
