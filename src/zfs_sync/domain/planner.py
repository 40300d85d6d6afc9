"""The sync planner: (group, members, facts, states, resolutions, now) -> GroupPlan.

Pure: no clock, database or network. ``plan_edge`` holds the per-edge rules from facts; this
module picks sources, walks the edges parents first, lets claims, cadence and offline hosts
hold actions back, and attaches ids and commands. ``apply_overlaps`` settles edges that two
enabled groups both plan. The rules with examples: ``docs/planner.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from zfs_sync.domain.names import join_dataset
from zfs_sync.domain.plan_actions import EdgeEnds, build_actions
from zfs_sync.domain.plan_edge import EdgeInput, EdgePlan, plan_edge
from zfs_sync.domain.plan_sources import (
    ROOT_MUST_BE_SET,
    Membership,
    Tie,
    apply_overlaps,
    choose_sources,
    group_reason,
    membership,
)
from zfs_sync.domain.plan_states import ClaimView, apply_claims, lag, owed_since
from zfs_sync.domain.plan_types import (
    Action,
    ActionType,
    Conflict,
    ConflictDetails,
    ConflictType,
    EdgeState,
    Group,
    GroupPlan,
    Member,
    PriorState,
    ReplicationEdge,
    Resolution,
    SyncStatus,
    SystemFacts,
)

DEFAULT_LATE_GRACE_SECONDS = 3600
GROUP_DISABLED = "group disabled"
SOURCE_OFFLINE = "source offline"
TARGET_OFFLINE = "target offline"
__all__ = ["GroupInputs", "apply_overlaps", "plan_group", "plan_groups"]


@dataclass(frozen=True)
class GroupInputs:
    """Everything ``plan_group`` needs for one group (for ``plan_groups``)."""

    group: Group
    members: Sequence[Member]
    facts: Mapping[str, SystemFacts]
    states: Sequence[PriorState] = ()
    resolutions: Sequence[Resolution] = ()


@dataclass
class _Context:
    """One planning run. Mutable only to collect results while walking the edges."""

    group: Group
    ms: Membership
    facts: Mapping[str, SystemFacts]
    priors: dict[tuple[str, str], PriorState]
    resolutions: dict[tuple[str, str], dict[ConflictType, Resolution]]
    now: datetime
    late_grace_seconds: int
    actions: list[Action] = field(default_factory=list)
    states: list[EdgeState] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    edges: list[ReplicationEdge] = field(default_factory=list)
    received: set[tuple[str, str]] = field(default_factory=set)  # (target, dataset) full sends
    renamed: set[tuple[str, str]] = field(default_factory=set)  # (target, dataset) moved aside


def _parents_first(dataset: str) -> tuple[str, ...]:
    # Component tuples sort a parent before all of its descendants.
    return tuple(dataset.split("/"))


# --- the plan -------------------------------------------------------------------------------


def _context(
    group: Group,
    members: Sequence[Member],
    facts: Mapping[str, SystemFacts],
    states: Iterable[PriorState],
    resolutions: Iterable[Resolution],
    now: datetime,
    late_grace_seconds: int,
) -> _Context:
    by_edge: dict[tuple[str, str], dict[ConflictType, Resolution]] = {}
    for r in resolutions:
        by_edge.setdefault((r.dataset, r.target_system_id), {})[r.conflict_type] = r
    priors = {(p.dataset, p.target_system_id): p for p in states}
    ms = membership(group, members, facts)
    return _Context(group, ms, facts, priors, by_edge, now, late_grace_seconds)


def plan_group(
    group: Group,
    members: Sequence[Member],
    facts: Mapping[str, SystemFacts],
    states: Iterable[PriorState],
    resolutions: Iterable[Resolution],
    now: datetime,
    late_grace_seconds: int = DEFAULT_LATE_GRACE_SECONDS,
) -> GroupPlan:
    """Plan one group: actions (run order), one state per edge, conflicts, protected edges.

    ``facts`` maps system id -> what it reported; ``states`` and ``resolutions`` belong to
    this group. Two groups covering the same edge are settled afterwards by
    ``apply_overlaps``.
    """
    ctx = _context(group, members, facts, states, resolutions, now, late_grace_seconds)
    reason = group_reason(ctx.ms)
    sources = choose_sources(ctx.ms)
    for dataset in sorted(sources, key=_parents_first):
        source = sources[dataset]
        for target in sorted(ctx.ms.members.values(), key=lambda m: m.system_id):
            if isinstance(source, Tie):
                _plan_tie(ctx, dataset, target, source)
            elif target.system_id != source.system_id:
                _plan_target(ctx, dataset, source, target)
    order = {sid: i for i, sid in enumerate(sorted(ctx.ms.members))}
    actions = sorted(
        ctx.actions,
        key=lambda a: (order[a.target_system_id], _parents_first(a.dataset), a.sequence),
    )
    return GroupPlan(
        group, tuple(actions), tuple(ctx.states), tuple(ctx.conflicts), tuple(ctx.edges), reason
    )


def plan_groups(
    inputs: Sequence[GroupInputs],
    now: datetime,
    late_grace_seconds: int = DEFAULT_LATE_GRACE_SECONDS,
) -> list[GroupPlan]:
    """Plan several groups and settle the edges they share (``apply_overlaps``)."""
    plans = [
        plan_group(i.group, i.members, i.facts, i.states, i.resolutions, now, late_grace_seconds)
        for i in inputs
    ]
    return apply_overlaps(plans)


def _plan_tie(ctx: _Context, dataset: str, member: Member, tie: Tie) -> None:
    """No source can be chosen: every member shows the conflict."""
    root = ctx.ms.roots[member.system_id]
    details = ConflictDetails(
        message="two members hold different snapshots with the same newest creation time",
        tied=tuple((sid, snap.name) for sid, snap in tie.tied),
    )
    mine = ctx.ms.eligible(member.system_id, dataset)
    ctx.states.append(
        EdgeState(
            sync_group_id=ctx.group.id,
            dataset=dataset,
            target_system_id=member.system_id,
            status=SyncStatus.CONFLICT,
            source_system_id=None,
            source_dataset=None,
            target_dataset=join_dataset(root, dataset) if root else None,
            latest_snapshot=mine[-1].name if mine else None,
            lag_seconds=0,
            late=False,
            reason=details.message,
        )
    )
    res = ctx.resolutions.get((dataset, member.system_id), {}).get(ConflictType.NEWEST_TIE)
    strategy = res.strategy if res else None
    ctx.conflicts.append(
        Conflict(
            ctx.group.id,
            dataset,
            member.system_id,
            ConflictType.NEWEST_TIE,
            None,
            details,
            strategy,
        )
    )


def _plan_target(ctx: _Context, dataset: str, source: Member, target: Member) -> None:
    source_root, target_root = ctx.ms.roots[source.system_id], ctx.ms.roots[target.system_id]
    assert source_root is not None
    if target_root is None:
        _plan_rootless(ctx, dataset, source, target)
        return
    target_dataset = join_dataset(target_root, dataset)
    target_system = ctx.facts.get(target.system_id)
    target_datasets = target_system.datasets if target_system else {}
    ends = EdgeEnds(
        ctx.group.id,
        dataset,
        source,
        target,
        join_dataset(source_root, dataset),
        target_dataset,
        ctx.ms.datasets[source.system_id][dataset],
        target_datasets.get(target_dataset),
    )
    edge = EdgeInput(
        dataset,
        ends.source_facts,
        target_dataset,
        ends.target_facts,
        frozenset(target_datasets),
        ctx.group.snapshot_pattern,
        ctx.group.allow_rollback,
        ctx.resolutions.get((dataset, target.system_id), {}),
        ctx.now,
    )
    _finish_edge(ctx, ends, plan_edge(edge))


def _plan_rootless(ctx: _Context, dataset: str, source: Member, target: Member) -> None:
    facts = ctx.facts.get(target.system_id)
    pools = facts.pools_with_snapshots() if facts is not None else frozenset()
    reason = f"{ROOT_MUST_BE_SET}: {target.hostname} reported {len(pools)} pools with snapshots"
    owed = ctx.ms.eligible(source.system_id, dataset)
    lag_seconds, late = lag(owed, ctx.now, ctx.group.sync_interval_seconds, ctx.late_grace_seconds)
    ctx.states.append(
        EdgeState(
            sync_group_id=ctx.group.id,
            dataset=dataset,
            target_system_id=target.system_id,
            status=SyncStatus.OUT_OF_SYNC,
            source_system_id=source.system_id,
            source_dataset=join_dataset(ctx.ms.roots[source.system_id] or "", dataset),
            target_dataset=None,
            latest_snapshot=None,
            lag_seconds=lag_seconds,
            late=late,
            reason=reason,
            owed_since=owed_since(owed),
        )
    )


def _hold_reason(ctx: _Context, ends: EdgeEnds, plan: EdgePlan, view: ClaimView) -> str | None:
    """Why the edge's steps are not handed out now (None: hand them out)."""
    if not ctx.group.enabled:
        return GROUP_DISABLED
    if not plan.steps:
        return None
    if not ends.source.online:
        return SOURCE_OFFLINE
    if not ends.target.online:
        return TARGET_OFFLINE
    renamed = next(
        (
            d
            for t, d in sorted(ctx.renamed)
            if t == ends.target.system_id and ends.target_dataset.startswith(d + "/")
        ),
        None,
    )
    if renamed is not None:
        return f"parent dataset {renamed} is being moved aside; planned after it is received"
    if view.in_progress:
        return view.reason
    if view.last_sync is not None:
        due = view.last_sync + timedelta(seconds=ctx.group.sync_interval_seconds)
        if ctx.now < due:
            return f"next sync due at {due.isoformat()} (sync_interval_seconds)"
    return None


def _finish_edge(ctx: _Context, ends: EdgeEnds, plan: EdgePlan) -> None:
    """Combine facts with claims and holds, then record the state, actions and conflicts."""
    prior = ctx.priors.get((ends.dataset, ends.target.system_id))
    target_history = ends.target_facts.history if ends.target_facts else None
    view = apply_claims(
        plan.status,
        plan.reason,
        prior,
        target_history,
        plan.owed,
        ctx.now,
        ctx.group.sync_interval_seconds,
    )
    owed = plan.owed if plan.status != SyncStatus.IN_SYNC else ()
    lag_seconds, late = lag(owed, ctx.now, ctx.group.sync_interval_seconds, ctx.late_grace_seconds)
    reason = _hold_reason(ctx, ends, plan, view)
    actions: tuple[Action, ...] = ()
    if reason is None and plan.steps:
        try:
            actions = build_actions(ends, plan.steps, late, _missing_parent(ctx, ends))
        except ValueError as err:
            reason = f"cannot build commands: {err}"
    ctx.actions.extend(actions)
    _remember_effects(ctx, ends, actions)
    since = owed_since(owed)
    ctx.states.append(
        _state(ends, view, plan, reason or view.reason, (lag_seconds, late, since), prior)
    )
    ctx.conflicts.extend(
        Conflict(
            sync_group_id=ctx.group.id,
            dataset=ends.dataset,
            target_system_id=ends.target.system_id,
            conflict_type=c.conflict_type,
            source_system_id=ends.source.system_id,
            details=c.details,
            resolution=c.resolution,
            planned=c.planned and bool(actions),  # held actions resolve nothing yet
            reopened=c.reopened,
        )
        for c in plan.conflicts
    )
    ctx.edges.append(
        ReplicationEdge(
            ctx.group.id,
            ends.dataset,
            ends.source.system_id,
            ends.source_dataset,
            ends.target.system_id,
            ends.target_dataset,
            plan.base_on_source,
            plan.base_on_target,
            plan.owed,
        )
    )


def _state(
    ends: EdgeEnds,
    view: ClaimView,
    plan: EdgePlan,
    reason: str | None,
    behind: tuple[int, bool, datetime | None],  # lag_seconds, late, owed_since
    prior: PriorState | None,
) -> EdgeState:
    lag_seconds, late, since = behind
    return EdgeState(
        sync_group_id=ends.sync_group_id,
        dataset=ends.dataset,
        target_system_id=ends.target.system_id,
        status=view.status,
        source_system_id=ends.source.system_id,
        source_dataset=ends.source_dataset,
        target_dataset=ends.target_dataset,
        latest_snapshot=plan.latest.name if plan.latest else None,
        lag_seconds=lag_seconds,
        late=late,
        reason=reason,
        error_message=view.error_message,
        last_sync=view.last_sync,
        last_transfer_bytes=prior.last_transfer_bytes if prior else None,
        last_transfer_seconds=prior.last_transfer_seconds if prior else None,
        owed_since=since,
    )


def _remember_effects(ctx: _Context, ends: EdgeEnds, actions: Sequence[Action]) -> None:
    key = (ends.target.system_id, ends.target_dataset)
    for action in actions:
        if action.action_type == ActionType.RENAME:
            ctx.renamed.add(key)
        if action.action_type == ActionType.FULL_SEND:
            ctx.received.add(key)


def _missing_parent(ctx: _Context, ends: EdgeEnds) -> str | None:
    """A note for a full send whose parent neither exists nor arrives earlier in this plan."""
    parent, sep, _ = ends.target_dataset.rpartition("/")
    if not sep or "/" not in parent:
        return None  # the parent is the pool's root dataset, which always exists
    facts = ctx.facts.get(ends.target.system_id)
    known = facts.datasets if facts is not None else {}
    # A reported child proves its parent exists, even if the parent itself was not reported.
    if (
        any(d == parent or d.startswith(parent + "/") for d in known)
        or (ends.target.system_id, parent) in ctx.received
    ):
        return None
    return (
        f"the target's parent dataset {parent} is missing: the agent creates it "
        "(zfs create -p, not mounted) before receiving"
    )
