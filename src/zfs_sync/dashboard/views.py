"""What each dashboard page shows, gathered through the API's own storage/planning functions.

One data path (STYLE.md): health comes from ``to_health``, group status from the API's
``group_status``, plans from ``planning``, conflicts and events from the same
storage functions as ``/conflicts`` and ``/events``. Every page is a few queries for the whole
fleet, never one per system or per group.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from zfs_sync import planning
from zfs_sync.api.routes.groups import to_public as group_public
from zfs_sync.api.routes.sync import group_status
from zfs_sync.api.routes.systems import to_health, to_public
from zfs_sync.api.schemas.groups import SyncGroupPublic
from zfs_sync.api.schemas.sync import ConflictOut, GroupStatus
from zfs_sync.api.schemas.systems import SystemPublic
from zfs_sync.config import Settings
from zfs_sync.domain.plan_types import Action, GroupPlan
from zfs_sync.storage import groups as group_store
from zfs_sync.storage import sync_states
from zfs_sync.storage import systems as system_store
from zfs_sync.storage.events import list_events
from zfs_sync.storage.models import Dataset, Event
from zfs_sync.storage.snapshot_queries import history
from zfs_sync.storage.summaries import dataset_rows

ALL = 100_000
RECENT_EVENTS = 15


@dataclass(frozen=True)
class SystemRow:
    id: str
    hostname: str
    platform: str
    status: str
    last_seen: datetime | None
    age_seconds: int | None
    agent_version: str | None
    snapshot_count: int
    dataset_count: int


@dataclass(frozen=True)
class Names:
    """Hostnames and group names for labelling ids (one query each)."""

    hosts: dict[str, str]
    groups: dict[str, str]

    def host(self, system_id: str | None) -> str:
        return self.hosts.get(system_id or "", system_id or "-")

    def group(self, group_id: str | None) -> str:
        return self.groups.get(group_id or "", group_id or "-")


@dataclass
class GroupCard:
    group: SyncGroupPublic
    status: GroupStatus

    @property
    def state(self) -> str:
        if self.status.conflict_count or self.status.open_conflicts:
            return "conflict"
        if self.status.total_states == self.status.in_sync_count:
            return "in_sync"
        return "out_of_sync"


@dataclass
class Overview:
    systems: Counter[str]
    groups: Counter[str]
    open_conflicts: int
    late_edges: int
    events: list[Event]


def names(session: Session) -> Names:
    hosts = {s.id: s.hostname for s in system_store.all_systems(session)}
    groups = {v.group.id: v.group.name for v in group_store.list_groups(session, ALL).items}
    return Names(hosts, groups)


def system_rows(session: Session, settings: Settings, now: datetime) -> list[SystemRow]:
    counts: dict[str, list[int]] = {}
    for row in dataset_rows(session):
        entry = counts.setdefault(row.system_id, [0, 0])
        entry[0] += row.snapshot_count
        entry[1] += 1
    rows = []
    for system in system_store.all_systems(session):
        health = to_health(system, settings, now)
        snaps, datasets = counts.get(system.id, [0, 0])
        rows.append(SystemRow(system.id, system.hostname, system.platform, health.status.value,
                              system.last_seen, health.heartbeat_age_seconds,
                              system.agent_version, snaps, datasets))
    return rows


def group_cards(session: Session, settings: Settings, now: datetime) -> list[GroupCard]:
    views = group_store.list_groups(session, ALL).items
    plans = {p.group.id: p for p in planning.plans_for_groups(
        session, [v.group.id for v in views], settings, now)}
    hosts = {s.id: s.hostname for s in system_store.all_systems(session)}
    open_by_group = Counter(c.sync_group_id for c in
                            sync_states.list_conflicts(session, None, sync_states.OPEN))
    return [
        GroupCard(group_public(v), group_status(plans[v.group.id], hosts, {},
                                                open_by_group[v.group.id], now))
        for v in views if v.group.id in plans
    ]


def overview(session: Session, settings: Settings, now: datetime,
             cards: list[GroupCard]) -> Overview:
    return Overview(
        systems=Counter(to_health(s, settings, now).status.value
                        for s in system_store.all_systems(session)),
        groups=Counter(c.state for c in cards),
        open_conflicts=sum(c.status.open_conflicts for c in cards),
        late_edges=sum(c.status.late_count for c in cards),
        events=list_events(session, limit=RECENT_EVENTS).items,
    )


@dataclass
class SystemDetail:
    system: SystemPublic
    health_age: int | None
    datasets: list[Dataset]
    groups: list[SyncGroupPublic]
    events: list[Event]


def system_detail(session: Session, system_id: str, settings: Settings,
                  now: datetime) -> SystemDetail:
    """Raises NotFound for an unknown id."""
    system = system_store.get_system(session, system_id)
    views = group_store.list_groups(session, ALL).items
    return SystemDetail(
        system=to_public(system, settings, now),
        health_age=to_health(system, settings, now).heartbeat_age_seconds,
        datasets=dataset_rows(session, [system_id]),
        groups=[group_public(v) for v in views if system_id in v.system_ids],
        events=list_events(session, system_id=system_id, limit=RECENT_EVENTS).items,
    )


@dataclass
class Topology:
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    size: int = 260


@dataclass
class Bar:
    label: str
    value: float
    x: float = 0
    height: float = 0
    css: str = ""


@dataclass
class GroupDetail:
    group: SyncGroupPublic
    status: GroupStatus
    conflicts: list[ConflictOut]
    actions: list[Action]
    topology: Topology
    lag_bars: list[Bar]
    snapshot_bars: list[Bar] = field(default_factory=list)

    @property
    def hosts(self) -> list[tuple[str, str]]:
        """The matrix's columns: every host in the status, by hostname."""
        seen = {s.system_id: s.hostname for d in self.status.datasets for s in d.systems}
        return sorted(seen.items(), key=lambda item: (item[1], item[0]))

    def cell(self, dataset: str, system_id: str) -> Any:
        for entry in self.status.datasets:
            if entry.dataset == dataset:
                return next((s for s in entry.systems if s.system_id == system_id), None)
        return None


def group_detail(session: Session, group_id: str, settings: Settings,
                 now: datetime) -> GroupDetail:
    """Raises NotFound for an unknown id."""
    group = group_public(group_store.get_group_view(session, group_id))
    plan = planning.plans_for_groups(session, [group_id], settings, now)[0]
    open_rows = sync_states.list_conflicts(session, group_id, sync_states.OPEN)
    # The API's group_status over this one plan (load_status would plan the group again).
    status = group_status(plan, names(session).hosts, source_newest(session, plan),
                          len(open_rows), now)
    conflicts = [ConflictOut.model_validate(c) for c in open_rows]
    return GroupDetail(group, status, conflicts, list(plan.actions), topology(group, status),
                       lag_bars(status), snapshot_bars(session, group, now))


def source_newest(session: Session, plan: GroupPlan) -> dict[tuple[str, str], str | None]:
    """Newest snapshot name of each (source system, source dataset) of the plan."""
    pairs = {(s.source_system_id, s.source_dataset) for s in plan.states
             if s.source_system_id and s.source_dataset}
    rows = dataset_rows(session, {p[0] for p in pairs}) if pairs else []
    return {(r.system_id, r.name): r.newest_name for r in rows if (r.system_id, r.name) in pairs}


def topology(group: SyncGroupPublic, status: GroupStatus) -> Topology:
    """Members on a circle; an arrow per (source, target) pair, coloured by its worst state."""
    topo = Topology([], [])
    centre, radius = topo.size / 2, topo.size / 2 - 40
    where: dict[str, tuple[float, float]] = {}
    count = max(1, len(group.members))
    for index, member in enumerate(group.members):
        angle = 2 * math.pi * index / count - math.pi / 2
        x, y = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
        where[member.system_id] = (x, y)
        topo.nodes.append({"x": round(x, 1), "y": round(y, 1), "label": member.hostname or "",
                           "hub": member.system_id == group.hub_system_id})
    worst: dict[tuple[str, str], str] = {}
    rank = ["in_sync", "syncing", "out_of_sync", "error", "conflict"]
    for dataset in status.datasets:
        for s in dataset.systems:
            if s.status == "source" or not dataset.source_system_id:
                continue
            key = (dataset.source_system_id, s.system_id)
            old = worst.get(key, "in_sync")
            worst[key] = max(old, s.status, key=lambda v: rank.index(v) if v in rank else 0)
    for (src, dst), state in sorted(worst.items()):
        if src in where and dst in where:
            topo.edges.append(_edge(where[src], where[dst], state))
    return topo


def _edge(a: tuple[float, float], b: tuple[float, float], state: str) -> dict[str, Any]:
    """A line from a to b, shortened so the arrowhead stops at the node's edge."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy) or 1
    trim = 16 / length
    return {"x1": round(a[0] + dx * trim, 1), "y1": round(a[1] + dy * trim, 1),
            "x2": round(b[0] - dx * trim, 1), "y2": round(b[1] - dy * trim, 1), "state": state}


def lag_bars(status: GroupStatus, limit: int = 24) -> list[Bar]:
    """One bar per target edge, scaled to the largest lag."""
    bars = [Bar(f"{d.dataset} @ {s.hostname}", s.lag_seconds, css=s.status)
            for d in status.datasets for s in d.systems if s.status != "source"][:limit]
    return _scale(bars)


def snapshot_bars(session: Session, group: SyncGroupPublic, now: datetime,
                  days: int = 14) -> list[Bar]:
    """Snapshots created per day over the last ``days`` days on the group's members."""
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day: Counter[str] = Counter()
    for member in group.members[:50]:
        page = history(session, member.system_id, start, limit=5000)
        per_day.update(s.timestamp.strftime("%m-%d") for s in page.items)
    labels = [(start + timedelta(days=i)).strftime("%m-%d") for i in range(days)]
    return _scale([Bar(label, per_day[label]) for label in labels])


def _scale(bars: list[Bar], height: float = 100) -> list[Bar]:
    top = max((b.value for b in bars), default=0) or 1
    for index, bar in enumerate(bars):
        bar.x = index * 22
        bar.height = round(height * bar.value / top, 1)
    return bars


def conflicts(session: Session, status: str | None) -> list[ConflictOut]:
    rows = sync_states.list_conflicts(session, None, status)
    return [ConflictOut.model_validate(c) for c in rows]


def conflict(session: Session, conflict_id: str) -> ConflictOut:
    """Raises NotFound for an unknown id."""
    return ConflictOut.model_validate(sync_states.get_conflict(session, conflict_id))


def activity(session: Session, type_: str | None, system_id: str | None, group_id: str | None,
             offset: int, limit: int = 100) -> tuple[list[Event], int]:
    page = list_events(session, type_=type_, system_id=system_id, sync_group_id=group_id,
                       limit=limit, offset=offset)
    return page.items, page.total
