"""Where each system keeps the logical datasets: its root (DESIGN.md §4).

A system's root is the ``root`` of its sync-group membership when one is set; otherwise its
pool, when it has reported snapshots on exactly one pool. Anything else (no snapshots, several
pools and no root set) leaves the root unknown (None): the caller says the root must be set.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zfs_sync.storage.models import Dataset, GroupMember


def system_roots(session: Session, system_ids: Collection[str]) -> dict[str, str | None]:
    """The root of every system in ``system_ids`` (None when it cannot be known).

    With memberships in several groups that set different roots, the oldest membership wins
    (the same "older group wins" rule as for overlapping groups).
    """
    ids = sorted(set(system_ids))
    roots: dict[str, str | None] = dict.fromkeys(ids)
    if not ids:
        return roots
    members = session.execute(
        select(GroupMember.system_id, GroupMember.root)
        .where(GroupMember.system_id.in_(ids), GroupMember.root.is_not(None))
        .where(GroupMember.root != "")
        .order_by(GroupMember.added_at.desc(), GroupMember.group_id.desc())
    )
    for system_id, root in members:
        roots[system_id] = root  # ordered newest first: the oldest is written last
    unset = [system_id for system_id, root in roots.items() if root is None]
    if unset:
        # From the dataset summaries: scanning snapshots would read whole histories.
        pools = session.execute(
            select(Dataset.system_id, func.min(Dataset.pool), func.max(Dataset.pool))
            .where(Dataset.system_id.in_(unset), Dataset.snapshot_count > 0)
            .group_by(Dataset.system_id)
        )
        for system_id, first, last in pools:
            if first == last:  # exactly one pool
                roots[system_id] = first
    return roots


def system_root(session: Session, system_id: str) -> str | None:
    return system_roots(session, [system_id])[system_id]
