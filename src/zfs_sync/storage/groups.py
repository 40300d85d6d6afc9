"""Sync groups and their members. Every change writes its event in the same transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zfs_sync.storage.common import Conflict, NotFound, Page, new_id
from zfs_sync.storage.events import record_event
from zfs_sync.storage.models import GroupMember, SyncGroup, System

P = ParamSpec("P")
R = TypeVar("R")

GROUP_FIELDS = (
    "name",
    "description",
    "enabled",
    "sync_interval_seconds",
    "directional",
    "hub_system_id",
    "datasets",
    "snapshot_pattern",
    "allow_rollback",
)


class WantedMember(Protocol):
    """A requested membership: any object with these two attributes (the API's MemberIn)."""

    @property
    def system_id(self) -> str: ...

    @property
    def root(self) -> str | None: ...


@dataclass(frozen=True)
class Member:
    system_id: str
    hostname: str
    root: str | None


@dataclass(frozen=True)
class GroupView:
    """A group with its members, ordered by hostname."""

    group: SyncGroup
    members: list[Member]

    @property
    def system_ids(self) -> list[str]:
        return [member.system_id for member in self.members]

    @property
    def roots(self) -> dict[str, str | None]:
        return {member.system_id: member.root for member in self.members}


class ConcurrentChange(Conflict):
    """Another transaction changed the same rows between our checks and our writes
    (PostgreSQL runs writers concurrently: the same name, a member system deleted, ...)."""


class DuplicateGroupName(Conflict):
    def __init__(self, name: str, group_id: str) -> None:
        super().__init__(f"a sync group named {name} exists")
        self.name = name
        self.group_id = group_id


class AlreadyMember(Conflict):
    def __init__(self, group_name: str, system_id: str) -> None:
        super().__init__(f"system {system_id} is already a member of {group_name}")
        self.group_name = group_name
        self.system_id = system_id


class NotAMember(Exception):
    def __init__(self, group_name: str, system_id: str) -> None:
        super().__init__(f"system {system_id} is not a member of {group_name}")
        self.group_name = group_name
        self.system_id = system_id


class MemberIsHub(Conflict):
    def __init__(self, group_name: str, system_id: str) -> None:
        super().__init__(f"system {system_id} is the hub of {group_name}")
        self.group_name = group_name
        self.system_id = system_id


# -- reads ----------------------------------------------------------------------------------


def get_group(session: Session, group_id: str) -> SyncGroup:
    group = session.get(SyncGroup, group_id)
    if group is None:
        raise NotFound("sync_group", group_id)
    return group


def members_of(session: Session, group_ids: Sequence[str]) -> dict[str, list[Member]]:
    """Members of several groups in one query, each list ordered by hostname."""
    found: dict[str, list[Member]] = {group_id: [] for group_id in group_ids}
    if not group_ids:
        return found
    rows = session.execute(
        select(GroupMember.group_id, GroupMember.system_id, System.hostname, GroupMember.root)
        .join(System, System.id == GroupMember.system_id)
        .where(GroupMember.group_id.in_(group_ids))
        .order_by(System.hostname, GroupMember.system_id)
    )
    for group_id, system_id, hostname, root in rows:
        found[group_id].append(Member(system_id, hostname, root))
    return found


def get_group_view(session: Session, group_id: str) -> GroupView:
    group = get_group(session, group_id)
    return GroupView(group, members_of(session, [group_id])[group_id])


def list_groups(session: Session, limit: int = 100, offset: int = 0) -> Page[GroupView]:
    total = session.scalar(select(func.count()).select_from(SyncGroup)) or 0
    groups = list(
        session.scalars(
            select(SyncGroup).order_by(SyncGroup.name, SyncGroup.id).limit(limit).offset(offset)
        )
    )
    members = members_of(session, [group.id for group in groups])
    return Page([GroupView(group, members[group.id]) for group in groups], total)


def require_systems(session: Session, system_ids: Iterable[str]) -> dict[str, System]:
    """The systems with these ids; NotFound naming the first unknown one."""
    wanted = list(dict.fromkeys(system_ids))
    if not wanted:
        return {}
    found = {s.id: s for s in session.scalars(select(System).where(System.id.in_(wanted)))}
    for system_id in wanted:
        if system_id not in found:
            raise NotFound("system", system_id)
    return found


def _check_name_free(session: Session, name: str, group_id: str | None = None) -> None:
    other = session.scalars(select(SyncGroup).where(SyncGroup.name == name)).first()
    if other is not None and other.id != group_id:
        raise DuplicateGroupName(name, other.id)


# -- writes ---------------------------------------------------------------------------------


def _constraint_conflicts(func: Callable[P, R]) -> Callable[P, R]:
    """A constraint failing on an insert (or autoflush) after our checks passed means another
    transaction got in between: report it as ConcurrentChange, not as an internal error."""

    @functools.wraps(func)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except IntegrityError as exc:
            raise ConcurrentChange(str(exc.orig)) from exc

    return guarded



@_constraint_conflicts
def create_group(
    session: Session, fields: dict[str, Any], members: Sequence[WantedMember], now: datetime
) -> GroupView:
    """Insert a group and its members. The caller has checked the group's rules."""
    _check_name_free(session, fields["name"])
    group = SyncGroup(id=new_id(), created_at=now, updated_at=now)
    for field in GROUP_FIELDS:
        setattr(group, field, fields[field])
    session.add(group)
    session.flush()
    for member in members:
        session.add(
            GroupMember(group_id=group.id, system_id=member.system_id, root=member.root,
                        added_at=now)
        )
    session.flush()
    view = get_group_view(session, group.id)
    record_event(
        session,
        "group.created",
        f"Sync group {group.name} created with {len(members)} member(s)",
        sync_group_id=group.id,
        data={
            "name": group.name,
            "system_ids": view.system_ids,
            "directional": group.directional,
            "hub_system_id": group.hub_system_id,
        },
        now=now,
    )
    return view


@_constraint_conflicts
def update_group(
    session: Session,
    group_id: str,
    fields: dict[str, Any],
    members: Sequence[WantedMember] | None,
    now: datetime,
) -> GroupView:
    """Apply a partial update; ``members`` (when given) replaces the membership.

    The caller has checked the resulting group's rules. Writes one ``group.updated`` event
    naming the fields whose values changed, plus one event per member added or removed.
    """
    group = get_group(session, group_id)
    if "name" in fields:
        _check_name_free(session, fields["name"], group.id)
    changed = [f for f in GROUP_FIELDS if f in fields and getattr(group, f) != fields[f]]
    for field in changed:
        setattr(group, field, fields[field])
    if members is not None and _replace_members(session, group, members, now):
        changed.append("members")
    if not changed:
        return get_group_view(session, group.id)
    group.updated_at = now
    session.flush()
    record_event(
        session,
        "group.updated",
        f"Sync group {group.name} updated ({', '.join(changed)})",
        sync_group_id=group.id,
        data={"fields": changed},
        now=now,
    )
    return get_group_view(session, group.id)


def _replace_members(
    session: Session, group: SyncGroup, wanted: Sequence[WantedMember], now: datetime
) -> bool:
    """Make the membership exactly ``wanted``; members that stay keep their ``added_at``."""
    current = {
        m.system_id: m
        for m in session.scalars(select(GroupMember).where(GroupMember.group_id == group.id))
    }
    wanted_ids = {m.system_id for m in wanted}
    touched = False
    for system_id, row in current.items():
        if system_id not in wanted_ids:
            session.delete(row)
            _member_event(session, group, system_id, "group.member_removed", row.root, now)
            touched = True
    for member in wanted:
        kept = current.get(member.system_id)
        if kept is None:
            session.add(
                GroupMember(group_id=group.id, system_id=member.system_id, root=member.root,
                            added_at=now)
            )
            _member_event(session, group, member.system_id, "group.member_added", member.root,
                          now)
            touched = True
        elif kept.root != member.root:
            kept.root = member.root
            touched = True
    return touched


def delete_group(session: Session, group_id: str, now: datetime) -> None:
    view = get_group_view(session, group_id)
    group = view.group
    session.delete(group)
    record_event(
        session,
        "group.deleted",
        f"Sync group {group.name} deleted",
        sync_group_id=group_id,
        severity="warning",
        data={"name": group.name, "system_ids": view.system_ids},
        now=now,
    )


@_constraint_conflicts
def add_member(
    session: Session, group_id: str, system_id: str, root: str | None, now: datetime
) -> GroupView:
    group = get_group(session, group_id)
    require_systems(session, [system_id])
    if session.get(GroupMember, (group_id, system_id)) is not None:
        raise AlreadyMember(group.name, system_id)
    session.add(GroupMember(group_id=group_id, system_id=system_id, root=root, added_at=now))
    group.updated_at = now
    _member_event(session, group, system_id, "group.member_added", root, now)
    session.flush()
    return get_group_view(session, group_id)


def remove_member(session: Session, group_id: str, system_id: str, now: datetime) -> None:
    """Remove a member; the hub of a directional group cannot be removed (MemberIsHub)."""
    group = get_group(session, group_id)
    row = session.get(GroupMember, (group_id, system_id))
    if row is None:
        raise NotAMember(group.name, system_id)
    if group.directional and group.hub_system_id == system_id:
        raise MemberIsHub(group.name, system_id)
    session.delete(row)
    group.updated_at = now
    _member_event(session, group, system_id, "group.member_removed", row.root, now)


def _member_event(
    session: Session, group: SyncGroup, system_id: str, type_: str, root: str | None,
    now: datetime,
) -> None:
    verb = "added to" if type_ == "group.member_added" else "removed from"
    hostname = session.scalar(select(System.hostname).where(System.id == system_id))
    record_event(
        session,
        type_,
        f"System {hostname or system_id} {verb} sync group {group.name}",
        system_id=system_id,
        sync_group_id=group.id,
        data={"hostname": hostname, "root": root},
        now=now,
    )
