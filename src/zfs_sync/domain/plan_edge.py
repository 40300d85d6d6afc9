"""The rules for one replication edge (source S, target T, logical dataset D), from facts only.

``plan_edge`` decides what T needs: nothing (in sync), a chain of abstract steps (full send,
incrementals, a rollback or rename the admin allowed) or a conflict. It knows nothing about
claims, cadence, hosts being online or commands: ``planner.py`` adds those. See
``docs/planner.md`` for the rules with examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import pairwise

from zfs_sync.domain import names
from zfs_sync.domain.plan_history import History, eligible, history, same_snapshot
from zfs_sync.domain.plan_types import (
    ActionType,
    ConflictDetails,
    ConflictType,
    DatasetFacts,
    Resolution,
    ResolutionStrategy,
    SnapshotFact,
    SnapshotRef,
    SyncStatus,
)

MAX_CHAIN_STEPS = 100  # -i steps per answer; the rest comes with the next answer


# --- the edge -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeInput:
    dataset: str  # logical
    source: DatasetFacts
    target_dataset: str
    target: DatasetFacts | None  # None: T lacks D
    target_dataset_names: frozenset[str]  # every dataset T reported (rename collisions)
    snapshot_pattern: str
    allow_rollback: bool
    resolutions: Mapping[ConflictType, Resolution]
    now: datetime


@dataclass(frozen=True)
class Step:
    """An action before ids, hosts and commands are attached."""

    action_type: ActionType
    snapshot: SnapshotFact | None = None  # the source snapshot delivered
    base: SnapshotFact | None = None  # the base on the source
    base_on_target: str | None = None  # its name on T (a rollback's snapshot)
    include_intermediate: bool = False
    rollback_to_base: bool = False
    rename_to: str | None = None
    estimated_size: int | None = None


@dataclass(frozen=True)
class EdgeConflict:
    conflict_type: ConflictType
    details: ConflictDetails
    resolution: ResolutionStrategy | None = None
    planned: bool = False
    reopened: bool = False


@dataclass(frozen=True)
class EdgePlan:
    status: SyncStatus  # from facts: in_sync, out_of_sync or conflict
    steps: tuple[Step, ...] = ()
    conflicts: tuple[EdgeConflict, ...] = ()
    base_on_source: SnapshotFact | None = None
    base_on_target: SnapshotFact | None = None
    owed: tuple[SnapshotFact, ...] = ()
    latest: SnapshotFact | None = None  # T's newest eligible snapshot
    reason: str | None = None


def _sizes(snaps: Iterable[SnapshotFact]) -> int | None:
    known = [s.size for s in snaps if s.size is not None]
    return sum(known) if known else None


def incremental_steps(
    path: Sequence[SnapshotFact], use_chain: bool, base_on_target: str, rollback_first: bool
) -> list[Step]:
    """From ``path[0]`` (the base) to ``path[-1]``: one ``-I`` step, or ``-i`` steps between
    consecutive eligible snapshots (at most MAX_CHAIN_STEPS).

    Every step after the first starts from what the previous step received, which is then
    T's newest snapshot, so it may safely discard un-snapshotted changes first (atime alone
    is enough to make a mounted target "modified").
    """
    if len(path) < 2:
        return []
    if not use_chain:
        return [
            Step(
                ActionType.INCREMENTAL_SEND,
                snapshot=path[-1],
                base=path[0],
                base_on_target=base_on_target,
                include_intermediate=True,
                rollback_to_base=rollback_first,
                estimated_size=_sizes(path[1:]),
            )
        ]
    steps = []
    for i, (base, snap) in enumerate(pairwise(path[: MAX_CHAIN_STEPS + 1])):
        on_target = base_on_target if i == 0 else base.name
        steps.append(
            Step(
                ActionType.INCREMENTAL_SEND,
                snapshot=snap,
                base=base,
                base_on_target=on_target,
                include_intermediate=False,
                rollback_to_base=rollback_first or i > 0,
                estimated_size=snap.size,
            )
        )
    return steps


def full_chain(source: Sequence[SnapshotFact], use_chain: bool) -> list[Step]:
    """Full send of the oldest eligible snapshot, then incrementals to the newest."""
    oldest = source[0]
    size = oldest.referenced if oldest.referenced is not None else oldest.size
    full = Step(ActionType.FULL_SEND, oldest, estimated_size=size)
    return [full, *incremental_steps(source, use_chain, oldest.name, True)]


def rename_aside_name(target_dataset: str, existing: frozenset[str], now: datetime) -> str | None:
    """``<name>.zfs-sync-YYYYMMDD``, with ``-2``, ``-3``... if that is taken already.

    None when that name would not be valid (too long): the conflict then stays open.
    """
    stem = f"{target_dataset}.zfs-sync-{now:%Y%m%d}"
    candidate, n = stem, 1
    while candidate in existing:
        n += 1
        candidate = f"{stem}-{n}"
    try:
        return names.validate_dataset_name(candidate)
    except names.InvalidName:
        return None


@dataclass(frozen=True)
class _Sides:
    """Both histories of an edge, computed once."""

    src_all: History
    src: tuple[SnapshotFact, ...]  # eligible, source order
    tgt_all: History
    tgt: tuple[SnapshotFact, ...]  # eligible, target order


def _sides(edge: EdgeInput, target: DatasetFacts) -> _Sides:
    src_all, tgt_all = edge.source.history, target.history
    pattern = edge.snapshot_pattern
    return _Sides(
        src_all, eligible(src_all.ordered, pattern), tgt_all, eligible(tgt_all.ordered, pattern)
    )


def plan_edge(edge: EdgeInput) -> EdgePlan:
    """The facts-only plan of one edge (DESIGN.md section 8, "Per edge")."""
    source = eligible(edge.source.history.ordered, edge.snapshot_pattern)
    use_chain = bool(edge.snapshot_pattern)
    if edge.target is None:
        return EdgePlan(SyncStatus.OUT_OF_SYNC, tuple(full_chain(source, use_chain)), owed=source)
    sides = _sides(edge, edge.target)
    # Any common snapshot is a valid base, matching the pattern or not: `zfs send -i` does
    # not care, and the receive needs the target's newest common snapshot.
    base_t = next((t for t in reversed(sides.tgt_all.ordered) if sides.src_all.find(t)), None)
    if base_t is None:
        return _no_common(edge, sides)
    base_s = sides.src_all.find(base_t)
    assert base_s is not None
    owed = _owed(sides, base_s)
    latest = sides.tgt[-1] if sides.tgt else None
    plan = EdgePlan(
        SyncStatus.IN_SYNC, base_on_source=base_s, base_on_target=base_t, owed=owed, latest=latest
    )
    if not owed:
        return plan
    plan = replace(plan, status=SyncStatus.OUT_OF_SYNC)
    target_only = tuple(t for t in sides.tgt_all.after(base_t) if not sides.src_all.find(t))
    if target_only:
        return _diverged(edge, sides, plan, target_only)
    mismatched = _mismatched(sides)
    if mismatched:
        return _guid_mismatch(edge, plan, mismatched)
    rollback_first = sides.tgt_all.newest == base_t
    steps = incremental_steps((base_s, *owed), use_chain, base_t.name, rollback_first)
    return replace(plan, steps=tuple(steps))


def _owed(sides: _Sides, base_s: SnapshotFact) -> tuple[SnapshotFact, ...]:
    """The source's eligible snapshots after the base that the target lacks, oldest first."""
    later = {id(s) for s in sides.src_all.after(base_s)}  # ``src`` holds the same objects
    return tuple(s for s in sides.src if id(s) in later and sides.tgt_all.find(s) is None)


def _mismatched(sides: _Sides) -> tuple[str, ...]:
    """Eligible names present on both sides with different guids."""
    every = len(sides.src) == len(sides.src_all.ordered)  # every snapshot is eligible
    src = sides.src_all if every else history(sides.src)
    return tuple(t.name for t in sides.tgt if src.mismatch(t) is not None)


def _resolution(edge: EdgeInput, kind: ConflictType) -> Resolution | None:
    return edge.resolutions.get(kind)


def _rename_plan(
    edge: EdgeInput, sides: _Sides, plan: EdgePlan, conflict: EdgeConflict, rename_to: str | None
) -> EdgePlan:
    """rename_target_aside: move T's dataset away (destroys nothing), then send it all."""
    if rename_to is None:
        stuck = replace(conflict, resolution=ResolutionStrategy.RENAME_TARGET_ASIDE)
        reason = f"cannot move {edge.target_dataset} aside: the new name would be too long"
        return replace(plan, status=SyncStatus.CONFLICT, conflicts=(stuck,), reason=reason)
    planned = EdgeConflict(
        conflict.conflict_type,
        conflict.details,
        ResolutionStrategy.RENAME_TARGET_ASIDE,
        planned=True,
    )
    rename = Step(ActionType.RENAME, rename_to=rename_to, estimated_size=0)
    steps = (rename, *full_chain(sides.src, bool(edge.snapshot_pattern)))
    return replace(
        plan,
        status=SyncStatus.OUT_OF_SYNC,
        steps=steps,
        conflicts=(planned,),
        owed=sides.src,
        reason=f"moving the target's dataset aside to {rename_to}",
    )


def _no_common(edge: EdgeInput, sides: _Sides) -> EdgePlan:
    rename_to = rename_aside_name(edge.target_dataset, edge.target_dataset_names, edge.now)
    details = ConflictDetails(
        message="the target has the dataset but no snapshot in common with the source",
        source_newest=sides.src[-1].name,
        target_newest=sides.tgt_all.newest.name if sides.tgt_all.newest else None,
        target_only=tuple(t.name for t in sides.tgt_all.ordered),
        rename_to=rename_to,
    )
    latest = sides.tgt[-1] if sides.tgt else None
    plan = EdgePlan(SyncStatus.CONFLICT, owed=sides.src, latest=latest, reason=details.message)
    res = _resolution(edge, ConflictType.NO_COMMON_SNAPSHOT)
    conflict = EdgeConflict(ConflictType.NO_COMMON_SNAPSHOT, details, res.strategy if res else None)
    if res is not None and res.strategy == ResolutionStrategy.RENAME_TARGET_ASIDE:
        return _rename_plan(edge, sides, plan, conflict, rename_to)
    return replace(plan, conflicts=(conflict,))


def _refs(snaps: Iterable[SnapshotFact]) -> tuple[SnapshotRef, ...]:
    return tuple(SnapshotRef(s.name, s.guid) for s in snaps)


def _covered(discard: Sequence[SnapshotFact], allowed: Sequence[SnapshotRef]) -> bool:
    """Every snapshot a rollback would destroy now was listed when it was allowed."""
    return all(any(same_snapshot(s, r) for r in allowed) for s in discard)


def _diverged(
    edge: EdgeInput, sides: _Sides, plan: EdgePlan, target_only: tuple[SnapshotFact, ...]
) -> EdgePlan:
    """T has snapshots after the base that S lacks: only an explicit allowance rolls back."""
    assert plan.base_on_target is not None and plan.base_on_source is not None
    rename_to = rename_aside_name(edge.target_dataset, edge.target_dataset_names, edge.now)
    details = ConflictDetails(
        message="the target has snapshots newer than the common base that the source lacks: "
        + ", ".join(s.name for s in target_only),
        source_newest=sides.src[-1].name,
        target_newest=target_only[-1].name,
        base=plan.base_on_target.name,
        target_only=tuple(s.name for s in target_only),
        would_discard=_refs(target_only),
        rename_to=rename_to,
        mismatched=_mismatched(sides),
    )
    res = _resolution(edge, ConflictType.TARGET_DIVERGED)
    strategy = res.strategy if res else None
    if strategy == ResolutionStrategy.RENAME_TARGET_ASIDE:
        conflict = EdgeConflict(ConflictType.TARGET_DIVERGED, details)
        return _rename_plan(edge, sides, plan, conflict, rename_to)
    resolved = (
        res is not None
        and strategy == ResolutionStrategy.ROLLBACK_TARGET
        and _covered(target_only, res.allowed_discard)
    )
    if not (edge.allow_rollback or resolved):
        reopened = strategy == ResolutionStrategy.ROLLBACK_TARGET
        reason = details.message
        if reopened:
            reason = "the target gained snapshots since the rollback was allowed; " + reason
        conflict = EdgeConflict(ConflictType.TARGET_DIVERGED, details, strategy, False, reopened)
        return replace(plan, status=SyncStatus.CONFLICT, conflicts=(conflict,), reason=reason)
    return _rollback_plan(edge, plan, details, strategy, resolved)


def _rollback_plan(
    edge: EdgeInput,
    plan: EdgePlan,
    details: ConflictDetails,
    strategy: ResolutionStrategy | None,
    by_resolution: bool,
) -> EdgePlan:
    """Roll T back to the base (destroying ``target_only``), then the incrementals."""
    base_s, base_t = plan.base_on_source, plan.base_on_target
    assert base_s is not None and base_t is not None
    why = "a rollback_target resolution" if by_resolution else "the group's allow_rollback"
    rollback = Step(ActionType.ROLLBACK, base_on_target=base_t.name, estimated_size=0)
    path = (base_s, *plan.owed)
    incrementals = incremental_steps(path, bool(edge.snapshot_pattern), base_t.name, True)
    conflict = EdgeConflict(ConflictType.TARGET_DIVERGED, details, strategy, planned=True)
    return replace(
        plan,
        steps=(rollback, *incrementals),
        conflicts=(conflict,),
        reason=f"rolling the target back to {base_t.name}, allowed by {why}",
    )


def _guid_mismatch(edge: EdgeInput, plan: EdgePlan, mismatched: tuple[str, ...]) -> EdgePlan:
    details = ConflictDetails(
        message="snapshots with the same name but different guids on source and target: "
        + ", ".join(mismatched),
        base=plan.base_on_target.name if plan.base_on_target else None,
        mismatched=mismatched,
    )
    res = _resolution(edge, ConflictType.GUID_MISMATCH)
    conflict = EdgeConflict(ConflictType.GUID_MISMATCH, details, res.strategy if res else None)
    return replace(plan, status=SyncStatus.CONFLICT, conflicts=(conflict,), reason=details.message)
