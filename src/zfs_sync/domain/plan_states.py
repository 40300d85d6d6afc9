"""States: facts beat claims (DESIGN.md section 8), and lag.

The facts give ``in_sync``, ``out_of_sync`` or ``conflict``. An agent's claim adds what facts
cannot show: ``syncing`` (while the facts have not moved and a lease runs) and ``error``
(until a successful sync). A claimed ``in_sync`` that the facts contradict is shown as
``out_of_sync`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from zfs_sync.domain.plan_history import History, same_snapshot
from zfs_sync.domain.plan_types import Claim, PriorState, SnapshotFact, SyncStatus

MIN_LEASE_SECONDS = 3600


@dataclass(frozen=True)
class ClaimView:
    status: SyncStatus
    reason: str | None
    error_message: str | None
    last_sync: datetime | None
    in_progress: bool  # a live `syncing` claim: hand out no new actions for the edge


def syncing_lease(interval_seconds: int) -> timedelta:
    """How long a `syncing` claim holds without news: 2 x interval, at least an hour."""
    return timedelta(seconds=max(2 * interval_seconds, MIN_LEASE_SECONDS))


def delivered(claim: Claim | None, target: History | None) -> bool:
    """The target holds the snapshot the claimed action delivered (a successful sync)."""
    if claim is None or claim.snapshot is None or target is None:
        return False
    return target.find(claim.snapshot) is not None


def last_sync(prior: PriorState | None, target: History | None) -> datetime | None:
    """The last successful sync: the claim time of the newest action whose snapshot arrived.

    Taken from the claim, not from ``now``, so that re-planning (every read of the status)
    does not move it.
    """
    if prior is None:
        return None
    success = prior.last_sync
    claim = prior.claim
    if claim is not None and delivered(claim, target):
        success = claim.claimed_at if success is None else max(success, claim.claimed_at)
    return success


def _facts_unchanged(claim: Claim, target: History | None) -> bool:
    newest = target.newest if target is not None else None
    before = claim.target_newest_at_claim
    if newest is None or before is None:
        return newest is None and before is None
    return same_snapshot(newest, before)


def _contradiction(claim: Claim, owed: Sequence[SnapshotFact]) -> str:
    when = claim.claimed_at.isoformat()
    if claim.snapshot is not None:
        return (
            f"reported in_sync at {when} for {claim.snapshot.name}, but the target's "
            "snapshots do not show it"
        )
    lacking = f": it lacks {owed[0].name}" if owed else ""
    return f"reported in_sync at {when}, but the target's snapshots show it behind{lacking}"


def apply_claims(
    facts_status: SyncStatus,
    facts_reason: str | None,
    prior: PriorState | None,
    target: History | None,
    owed: Sequence[SnapshotFact],
    now: datetime,
    interval_seconds: int,
) -> ClaimView:
    """Combine the facts-derived status with the agent's last claim."""
    synced = last_sync(prior, target)
    claim = prior.claim if prior is not None else None
    if facts_status != SyncStatus.OUT_OF_SYNC or claim is None or delivered(claim, target):
        return ClaimView(facts_status, facts_reason, None, synced, False)
    if claim.status == SyncStatus.SYNCING:
        live = now < claim.claimed_at + syncing_lease(interval_seconds)
        if live and _facts_unchanged(claim, target):
            reason = f"sync in progress since {claim.claimed_at.isoformat()}"
            return ClaimView(SyncStatus.SYNCING, reason, None, synced, True)
    if claim.status == SyncStatus.ERROR:
        return ClaimView(SyncStatus.ERROR, facts_reason, claim.error_message, synced, False)
    if claim.status == SyncStatus.IN_SYNC:
        reason = _contradiction(claim, owed)
        return ClaimView(SyncStatus.OUT_OF_SYNC, reason, None, synced, False)
    return ClaimView(facts_status, facts_reason, None, synced, False)


def owed_since(owed: Sequence[SnapshotFact]) -> datetime | None:
    """Creation time of the oldest owed snapshot (None when nothing is owed)."""
    return min(s.timestamp for s in owed) if owed else None


def lag_at(since: datetime | None, now: datetime) -> int:
    """Seconds behind at ``now`` for a target owed snapshots since ``since``."""
    return 0 if since is None else max(0, int((now - since).total_seconds()))


def late_after(since: datetime, interval_seconds: int, grace_seconds: int) -> datetime:
    """The moment from which (strictly after) an edge owed since ``since`` is late."""
    return since + timedelta(seconds=interval_seconds + grace_seconds)


def lag(
    owed: Sequence[SnapshotFact], now: datetime, interval_seconds: int, grace_seconds: int
) -> tuple[int, bool]:
    """(lag_seconds, late): now minus the oldest owed snapshot's creation; 0 when none owed.

    Late strictly after interval + grace.
    """
    since = owed_since(owed)
    if since is None:
        return 0, False
    return lag_at(since, now), now > late_after(since, interval_seconds, grace_seconds)
