"""Who takes part: members' roots, the datasets a group covers, each dataset's source, and
which of several enabled groups owns an edge they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from zfs_sync.domain.names import logical_dataset
from zfs_sync.domain.plan_history import dataset_matches, eligible, same_snapshot
from zfs_sync.domain.plan_types import (
    DatasetFacts,
    Group,
    GroupPlan,
    Member,
    SnapshotFact,
    SystemFacts,
)

ROOT_MUST_BE_SET = "root must be set"


@dataclass(frozen=True)
class Tie:
    """Bidirectional: different snapshots share the newest creation time; no source."""

    tied: tuple[tuple[str, SnapshotFact], ...]  # (system id, its newest-time snapshot)


@dataclass(frozen=True)
class Membership:
    """A group's members with their resolved roots and the datasets the group covers."""

    group: Group
    members: Mapping[str, Member]
    roots: Mapping[str, str | None]  # None: the root must be set
    datasets: Mapping[str, Mapping[str, DatasetFacts]]  # system -> logical -> facts

    def eligible(self, system_id: str, dataset: str) -> tuple[SnapshotFact, ...]:
        """The member's snapshots of ``dataset`` matching the pattern, in its own order."""
        facts = self.datasets[system_id].get(dataset)
        if facts is None:
            return ()
        return eligible(facts.history.ordered, self.group.snapshot_pattern)


def member_root(member: Member, facts: SystemFacts | None) -> str | None:
    """The member's root, or its only pool with snapshots; None when that is ambiguous."""
    if member.root is not None:
        return member.root
    pools = facts.pools_with_snapshots() if facts is not None else frozenset()
    return next(iter(pools)) if len(pools) == 1 else None


def member_datasets(group: Group, root: str, facts: SystemFacts | None) -> dict[str, DatasetFacts]:
    """Logical name -> facts of the datasets below ``root`` that the group covers.

    The root itself (logical "") is a container, not replicated: a pool's root dataset or a
    prefix like ``backup/hostA`` always exists on the target and cannot be received into.
    """
    found: dict[str, DatasetFacts] = {}
    for name, dataset in facts.datasets.items() if facts is not None else ():
        logical = logical_dataset(name, root)
        if logical and dataset_matches(logical, group.datasets):
            found[logical] = dataset
    return found


def membership(
    group: Group, members: Sequence[Member], facts: Mapping[str, SystemFacts]
) -> Membership:
    by_id = {m.system_id: m for m in members}
    roots = {sid: member_root(m, facts.get(sid)) for sid, m in by_id.items()}
    datasets = {
        sid: member_datasets(group, root, facts.get(sid)) if root else {}
        for sid, root in roots.items()
    }
    return Membership(group, by_id, roots, datasets)


def _bidirectional_source(ms: Membership, dataset: str) -> Member | Tie | None:
    """The member holding the newest snapshot; a tie when two *different* snapshots share it.

    A holder qualifies when it also holds every other holder's newest-time snapshots; among
    qualifying holders an online one is preferred, then the smallest system id (stable).
    """
    holders = {sid: snaps for sid in ms.members if (snaps := ms.eligible(sid, dataset))}
    if not holders:
        return None
    newest = max(s.timestamp for snaps in holders.values() for s in snaps)
    top = {sid: [s for s in snaps if s.timestamp == newest] for sid, snaps in holders.items()}
    top = {sid: snaps for sid, snaps in top.items() if snaps}
    qualified = [
        sid
        for sid, mine in top.items()
        if all(any(same_snapshot(o, m) for m in mine) for other in top.values() for o in other)
    ]
    if not qualified:
        return Tie(tuple((sid, snaps[-1]) for sid, snaps in sorted(top.items())))
    best = min(qualified, key=lambda sid: (not ms.members[sid].online, sid))
    return ms.members[best]


def choose_sources(ms: Membership) -> dict[str, Member | Tie]:
    """Logical dataset -> its source (or the tie that prevents choosing one).

    Only datasets with at least one eligible snapshot on their source take part.
    """
    group = ms.group
    if group.directional:
        hub = ms.members.get(group.hub_system_id) if group.hub_system_id else None
        if hub is None or ms.roots[hub.system_id] is None:
            return {}
        return {d: hub for d in ms.datasets[hub.system_id] if ms.eligible(hub.system_id, d)}
    found: dict[str, Member | Tie] = {}
    for dataset in {d for per_member in ms.datasets.values() for d in per_member}:
        source = _bidirectional_source(ms, dataset)
        if source is not None:
            found[dataset] = source
    return found


def group_reason(ms: Membership) -> str | None:
    """Why a directional group cannot plan anything at all."""
    group = ms.group
    if not group.directional:
        return None
    if group.hub_system_id is None:
        return "directional group has no hub"
    if group.hub_system_id not in ms.members:
        return "the hub is not a member of the group"
    if ms.roots[group.hub_system_id] is None:
        return f"{ROOT_MUST_BE_SET} for the hub {ms.members[group.hub_system_id].hostname}"
    return None


# --- groups sharing an edge -----------------------------------------------------------------


def apply_overlaps(plans: Sequence[GroupPlan]) -> list[GroupPlan]:
    """When enabled groups plan the same target dataset, the oldest group keeps the edge.

    The others keep a state for it with the reason "covered by group X", and lose its
    actions, conflicts and retention edge (the owning group reports those).
    """
    owners: dict[tuple[str, str], Group] = {}
    enabled = [p for p in plans if p.group.enabled]
    for plan in sorted(enabled, key=lambda p: (p.group.created_at, p.group.id)):
        for state in plan.states:
            if state.target_dataset is not None:
                owners.setdefault((state.target_system_id, state.target_dataset), plan.group)
    return [_drop_covered(plan, owners) if plan.group.enabled else plan for plan in plans]


def _drop_covered(plan: GroupPlan, owners: Mapping[tuple[str, str], Group]) -> GroupPlan:
    def owner(target: str, dataset: str | None) -> Group | None:
        found = owners.get((target, dataset)) if dataset is not None else None
        return found if found is not None and found.id != plan.group.id else None

    covered = {
        (s.dataset, s.target_system_id)
        for s in plan.states
        if owner(s.target_system_id, s.target_dataset)
    }
    if not covered:
        return plan
    states = tuple(
        replace(s, reason=f"covered by group {o.name}")
        if (o := owner(s.target_system_id, s.target_dataset))
        else s
        for s in plan.states
    )
    return replace(
        plan,
        states=states,
        actions=tuple(a for a in plan.actions if (a.dataset, a.target_system_id) not in covered),
        conflicts=tuple(
            c for c in plan.conflicts if (c.dataset, c.target_system_id) not in covered
        ),
        edges=tuple(e for e in plan.edges if (e.dataset, e.target_system_id) not in covered),
    )
