"""Plans for the API, the dashboard and the monitor: load inputs, plan, settle overlaps.

One data path: every reader of sync state (instructions, group status, states, protected
snapshots) goes through ``plan``, which reuses a plan made from the same inputs while the
clock allows (``plan_cache.py``). Inputs are windows of each dataset's newest snapshots
(``storage/plan_inputs.py``); where a window cannot show the whole story (a target lacking
the dataset, a conflict, no common base inside the window) that dataset is planned again
from its whole history, so the result is the same as planning from everything.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from zfs_sync.config import Settings
from zfs_sync.domain.plan_history import dataset_matches
from zfs_sync.domain.plan_types import GroupPlan
from zfs_sync.domain.plan_validity import valid_until
from zfs_sync.domain.planner import apply_overlaps, plan_group
from zfs_sync.plan_cache import PLAN_CACHE, PlanCache
from zfs_sync.storage import revision
from zfs_sync.storage.models import SyncGroup
from zfs_sync.storage.plan_inputs import EdgeKey, Loaded, groups_for, load_inputs


def plan(
    session: Session,
    groups: Sequence[SyncGroup],
    settings: Settings,
    now: datetime,
    *,
    only_target: str | None = None,
) -> list[GroupPlan]:
    """Plan ``groups`` (with overlaps settled among them)."""
    if not groups:
        return []
    key = _key(groups, only_target, settings)
    cache, current, found = _look_up(session, key, now)
    if found is not None:
        return found
    plans, loaded = _plan(session, groups, settings, now, only_target)
    if cache is not None and current is not None:
        cache.put(key, current, now, _valid_until(plans, loaded, settings, now), plans)
    return plans


def _key(groups: Sequence[SyncGroup], only_target: str | None, settings: Settings) -> Hashable:
    # The settings plans read: tests (and only tests) vary them between calls.
    lead = (settings.late_grace_seconds, settings.heartbeat_timeout_seconds)
    return (tuple(g.id for g in groups), only_target, lead)


def _look_up(
    session: Session,
    key: Hashable,
    now: datetime,
    narrow: Callable[[GroupPlan], GroupPlan] | None = None,
) -> tuple[PlanCache | None, int | None, list[GroupPlan] | None]:
    """(the cache, the current revision, the cached plans) as far as there are any."""
    cache = session.info.get(PLAN_CACHE)
    # A write that changed inputs and has not committed yet must see its own changes.
    if not isinstance(cache, PlanCache) or revision.changed(session):
        return None, None, None
    current = revision.read(session)  # before the data: the data is at least this new
    if current is None:
        return cache, None, None
    return cache, current, cache.get(key, current, now, narrow)


def _plan(
    session: Session,
    groups: Sequence[SyncGroup],
    settings: Settings,
    now: datetime,
    only_target: str | None,
) -> tuple[list[GroupPlan], Loaded]:
    loaded = load_inputs(session, groups, settings, now, only_target=only_target)
    plans = _plan_all(loaded, settings, now)
    redo = needs_history(plans, loaded)
    if redo:
        loaded = load_inputs(session, groups, settings, now, full=redo, only_target=only_target)
        plans = _plan_all(loaded, settings, now)
    return apply_overlaps(plans), loaded


def _valid_until(
    plans: Sequence[GroupPlan], loaded: Loaded, settings: Settings, now: datetime
) -> datetime:
    """When the clock alone could change these plans: see ``domain/plan_validity.py``."""
    priors = {i.group.id: i.states for i in loaded.inputs}
    moments = [
        valid_until(p, priors.get(p.group.id, ()), now, settings.late_grace_seconds)
        for p in plans
    ]
    if loaded.offline_at is not None:
        moments.append(loaded.offline_at)
    return min(moments)


def _plan_all(loaded: Loaded, settings: Settings, now: datetime) -> list[GroupPlan]:
    return [
        plan_group(
            i.group, i.members, i.facts, i.states, i.resolutions, now, settings.late_grace_seconds
        )
        for i in loaded.inputs
    ]


def needs_history(plans: Sequence[GroupPlan], loaded: Loaded) -> set[EdgeKey]:
    """Datasets whose plan may depend on snapshots older than the loaded windows.

    A window is enough for an edge when the planner found a base in it and saw no conflict:
    everything the rules look at (base, owed, newest) is then newer than the base. A dataset
    that produced no state at all may have eligible snapshots only before the window (a
    ``snapshot_pattern`` matching old snapshots only): it is re-planned too.
    """
    redo: set[EdgeKey] = set()
    for plan in plans:
        with_base = {(e.dataset, e.target_system_id) for e in plan.edges if e.base_on_target}
        doubtful = {c.dataset for c in plan.conflicts}
        doubtful |= {
            s.dataset for s in plan.states if (s.dataset, s.target_system_id) not in with_base
        }
        planned = {s.dataset for s in plan.states}
        doubtful |= {
            logical
            for group_id, logical in loaded.pairs
            if group_id == plan.group.id
            and logical not in planned
            and logical
            and dataset_matches(logical, plan.group.datasets)
        }
        for dataset in doubtful:
            key = (plan.group.id, dataset)
            if loaded.pairs.get(key, set()) & loaded.truncated:
                redo.add(key)
    return redo


def plans_for_groups(
    session: Session, group_ids: Collection[str], settings: Settings, now: datetime
) -> list[GroupPlan]:
    """Plans of these groups (other groups sharing members are planned for overlaps)."""

    wanted = set(group_ids)
    plans = plan(session, groups_for(session, group_ids=wanted), settings, now)
    return [p for p in plans if p.group.id in wanted]


def plans_for_target(
    session: Session,
    system_id: str,
    settings: Settings,
    now: datetime,
    group_id: str | None = None,
) -> list[GroupPlan]:
    """Plans of the groups ``system_id`` belongs to, limited to its own edges as target.

    Where the plans of those groups as a whole are cached (every report re-plans its
    system's groups whole, so they usually are), they answer: an edge is planned the same
    whether the other members' edges are planned beside it or not.
    """
    groups = groups_for(session, member=system_id, related=False)
    if not groups:
        return []
    related = groups_for(session, member=system_id)

    def mine(plan: GroupPlan) -> GroupPlan:
        return plan.for_target(system_id)

    whole = _look_up(session, _key(related, None, settings), now, mine)[2]
    plans = whole or [mine(p) for p in plan(session, groups, settings, now, only_target=system_id)]
    wanted = {g.id for g in groups} if group_id is None else {group_id}
    return [p for p in plans if p.group.id in wanted]


def plans_for_system(
    session: Session, system_id: str, settings: Settings, now: datetime
) -> list[GroupPlan]:
    """Plans of every group the system is in, whole (it may be a source for many targets)."""

    return plan(session, groups_for(session, member=system_id), settings, now)


def refresh(
    session: Session, group_ids: Collection[str], settings: Settings, now: datetime
) -> list[GroupPlan]:
    """Re-plan these groups and store what changed (states, conflicts, events)."""
    from zfs_sync.storage.sync_states import persist_plans

    plans = plans_for_groups(session, group_ids, settings, now)
    persist_plans(session, plans, now)
    return plans


def groups_of_system(session: Session, system_id: str) -> list[str]:
    return [g.id for g in groups_for(session, member=system_id, related=False)]
