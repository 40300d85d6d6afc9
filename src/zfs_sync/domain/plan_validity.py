"""How long a plan stays true as the clock moves, and reading it again later (pure).

Given the same facts, claims and resolutions, the planner's answer depends on ``now`` in a few
ways only (DESIGN.md section 8):

- each lag grows with the clock (``now - owed_since``), which ``at`` brings forward;
- an edge becomes late strictly after ``owed_since + interval + grace``;
- a cadence hold ends at ``last_sync + interval``;
- a ``syncing`` claim's lease ends at ``claimed_at + lease``;
- the name a ``rename`` action gives a dataset carries the date (next UTC midnight);
- a host goes offline when its heartbeat timeout runs out (storage knows the heartbeats:
  ``storage/plan_inputs.py`` adds that moment).

``valid_until`` is the first of those moments after ``now``. For every ``later`` with
``now <= later < valid_until``, ``at(plan, later)`` equals planning the same inputs at ``later``
(``tests/api/test_plan_cache.py`` checks it on random fleets).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone

from zfs_sync.domain.plan_states import lag_at, late_after, syncing_lease
from zfs_sync.domain.plan_types import EdgeState, GroupPlan, PriorState, SyncStatus

TICK = timedelta(microseconds=1)  # "strictly after t" begins at t + 1 µs


def next_midnight(now: datetime) -> datetime:
    day = now.astimezone(timezone.utc).date() + timedelta(days=1)
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def valid_until(
    plan: GroupPlan, priors: Iterable[PriorState], now: datetime, late_grace_seconds: int
) -> datetime:
    """The first moment after ``now`` at which planning again could give another answer."""
    interval_seconds = plan.group.sync_interval_seconds
    interval = timedelta(seconds=interval_seconds)
    moments = [next_midnight(now)]
    for state in plan.states:
        if state.owed_since is not None and not state.late:
            late = late_after(state.owed_since, interval_seconds, late_grace_seconds)
            moments.append(late + TICK)
        if state.last_sync is not None:
            moments.append(state.last_sync + interval)
    for prior in priors:
        if prior.last_sync is not None:
            moments.append(prior.last_sync + interval)
        claim = prior.claim
        if claim is not None:
            moments.append(claim.claimed_at + interval)  # a delivered claim is a last sync
            if claim.status == SyncStatus.SYNCING:
                moments.append(claim.claimed_at + syncing_lease(interval_seconds))
    return min(m for m in moments if m > now)


def at(plan: GroupPlan, later: datetime) -> GroupPlan:
    """``plan`` read at ``later`` (before its ``valid_until``): only the lags move."""
    states = tuple(
        s if s.owed_since is None else _with_lag(s, lag_at(s.owed_since, later))
        for s in plan.states
    )
    return replace(plan, states=states)


def _with_lag(state: EdgeState, lag_seconds: int) -> EdgeState:
    # dataclasses.replace runs __init__ over every field: a few µs, for thousands of states
    # per read of a big group. A copy of the instance dict is a tenth of that.
    if state.lag_seconds == lag_seconds:
        return state
    copy = object.__new__(EdgeState)
    copy.__dict__.update(state.__dict__, lag_seconds=lag_seconds)
    return copy
