"""Windowed planner inputs give exactly the plan of whole histories.

``zfs_sync.planning.plan`` loads only a window of each dataset's newest snapshots
(``storage/plan_inputs.py``) and re-plans from whole histories where it judges the window not
enough. These tests build fleets through the API (long histories, lagging, missing, diverged
and unrelated targets, hosts with and without guids, claims and resolutions) and compare its
result with two references:

- ``load_inputs(..., full=<every (group, logical dataset)>)`` planned with ``plan_group`` and
  ``apply_overlaps`` (the same loader, with no window);
- an independent loader: every dataset and snapshot row of every member, straight from the
  tables (so that what the loader chooses to read is checked as well).

The random fleets use seeds 0..3; ``ZFS_SYNC_TEST_WINDOW_SEEDS=40`` runs more of them.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.api.test_sync import (
    API,
    HOUR,
    NOW,
    Host,
    at,
    group,
    host,
    report_state,
)
from tests.conftest import ADMIN, Witness
from zfs_sync import planning
from zfs_sync.domain import plan_types as pt
from zfs_sync.domain.planner import apply_overlaps, plan_group
from zfs_sync.storage import plan_inputs
from zfs_sync.storage.models import (
    Dataset,
    GroupMember,
    Snapshot,
    SyncGroup,
    SyncState,
    System,
)

# -- the references -----------------------------------------------------------------------------


def full_keys(session: Session, groups: Sequence[SyncGroup], settings: Any,
              now: datetime) -> set[tuple[str, str]]:
    loaded = plan_inputs.load_inputs(session, groups, settings, now)
    return set(loaded.pairs)


def plans_from_full_loader(session: Session, groups: Sequence[SyncGroup], settings: Any,
                           now: datetime, only_target: str | None = None) -> list[pt.GroupPlan]:
    loaded = plan_inputs.load_inputs(session, groups, settings, now, whole=True,
                                     only_target=only_target)
    assert not loaded.truncated, "whole=True must load whole histories"
    return apply_overlaps([
        plan_group(i.group, i.members, i.facts, i.states, i.resolutions, now,
                   settings.late_grace_seconds)
        for i in loaded.inputs
    ])


def plans_from_tables(session: Session, groups: Sequence[SyncGroup], settings: Any,
                      now: datetime, only_target: str | None = None) -> list[pt.GroupPlan]:
    """Whole histories read straight from the tables: no windows, no choice of what to read."""
    members: dict[str, list[tuple[GroupMember, System]]] = defaultdict(list)
    rows = session.execute(
        select(GroupMember, System)
        .join(System, System.id == GroupMember.system_id)
        .where(GroupMember.group_id.in_([g.id for g in groups]))
    )
    for member, system in rows:
        if only_target is not None:
            owner = next(g for g in groups if g.id == member.group_id)
            if owner.directional and system.id not in (only_target, owner.hub_system_id):
                continue
        members[member.group_id].append((member, system))
    system_ids = {s.id for found in members.values() for _, s in found}
    datasets: dict[str, list[pt.DatasetFacts]] = defaultdict(list)
    for row in session.scalars(select(Dataset).where(Dataset.system_id.in_(system_ids))):
        datasets[row.system_id].append(pt.DatasetFacts(row.name, row.encryption))
    snaps: dict[str, list[tuple[str, pt.SnapshotFact]]] = defaultdict(list)
    for s in session.scalars(select(Snapshot).where(Snapshot.system_id.in_(system_ids))):
        snaps[s.system_id].append((s.dataset, pt.SnapshotFact(
            s.name, s.timestamp, s.id, s.guid, s.createtxg, s.size, s.referenced)))
    facts = {sid: pt.build_system_facts(sid, snaps.get(sid, []), datasets.get(sid, []))
             for sid in system_ids}
    ids = [g.id for g in groups]
    priors: dict[str, list[pt.PriorState]] = defaultdict(list)
    for row in session.scalars(select(SyncState).where(SyncState.sync_group_id.in_(ids))):
        priors[row.sync_group_id].append(plan_inputs.to_prior(row))
    resolutions = plan_inputs._resolutions(session, ids)
    plans = []
    for g in groups:
        mine = members.get(g.id, [])
        plans.append(plan_group(
            plan_inputs.to_group(g),
            [plan_inputs.to_member(system, m.root, settings, now) for m, system in mine],
            {system.id: facts[system.id] for _, system in mine},
            priors.get(g.id, []), resolutions.get(g.id, []), now, settings.late_grace_seconds))
    return apply_overlaps(plans)


# -- comparing plans ----------------------------------------------------------------------------


def differences(got: Sequence[pt.GroupPlan], want: Sequence[pt.GroupPlan]) -> list[str]:
    """Readable differences between two lists of plans (empty: identical)."""
    found: list[str] = []
    by_id = {p.group.id: p for p in want}
    assert [p.group.id for p in got] == [p.group.id for p in want]
    for plan in got:
        other = by_id[plan.group.id]
        for part in ("actions", "states", "conflicts", "edges"):
            mine, theirs = _keyed(getattr(plan, part)), _keyed(getattr(other, part))
            for key in sorted(set(mine) | set(theirs), key=str):
                a, b = mine.get(key), theirs.get(key)
                if a != b:
                    found.append(f"{plan.group.name} {part} {key}: " + _diff(a, b))
        if plan.reason != other.reason:
            found.append(f"{plan.group.name} reason: {plan.reason!r} != {other.reason!r}")
        # The order matters too: instructions are in run order.
        if [a.action_id for a in plan.actions] != [a.action_id for a in other.actions]:
            found.append(f"{plan.group.name} action order differs")
    return found


def _keyed(items: Sequence[Any]) -> dict[tuple[Any, ...], Any]:
    keyed: dict[tuple[Any, ...], Any] = {}
    for item in items:
        key = (getattr(item, "dataset", None), getattr(item, "target_system_id", None),
               getattr(item, "sequence", None) or getattr(item, "conflict_type", None))
        keyed[key] = item
    return keyed


def _diff(a: Any, b: Any) -> str:
    if a is None or b is None or not is_dataclass(a):
        return f"windowed={_short(a)} whole={_short(b)}"
    parts = [f"{f.name}: windowed={_short(getattr(a, f.name))} whole={_short(getattr(b, f.name))}"
             for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)]
    return "; ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 4:
        return f"({len(value)} items: {_short(value[0])} .. {_short(value[-1])})"
    if isinstance(value, pt.SnapshotFact):
        return value.name
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    if is_dataclass(value):
        return type(value).__name__ + "(" + ", ".join(
            f"{f.name}={_short(getattr(value, f.name))}" for f in fields(value)
            if getattr(value, f.name) not in (None, (), "", False)) + ")"
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "..."


def compare_everything(witness: Witness, now: datetime | None = None) -> list[str]:
    """Windowed vs both references, for every group, every target and every system."""
    now = now or witness.clock()
    settings = witness.settings
    problems: list[str] = []
    with witness.db.read() as session:
        every = list(session.scalars(select(SyncGroup.id)))
        groups = plan_inputs.groups_for(session, group_ids=every)
        windowed = planning.plan(session, groups, settings, now)
        for name, reference in (("full loader", plans_from_full_loader),
                                ("tables", plans_from_tables)):
            problems += [f"[{name}] {d}" for d in differences(windowed, reference(
                session, groups, settings, now))]
        systems = list(session.scalars(select(System.id)))
        for system_id in systems:
            mine = plan_inputs.groups_for(session, member=system_id, related=False)
            got = planning.plan(session, mine, settings, now, only_target=system_id)
            want = plans_from_tables(session, mine, settings, now, only_target=system_id)
            problems += [f"[target {system_id[:8]}] {d}" for d in _target_differences(
                got, want, system_id)]
    return problems


def _target_differences(got: Sequence[pt.GroupPlan], want: Sequence[pt.GroupPlan],
                        target: str) -> list[str]:
    """What instructions read: the target's own actions (in order) and states."""
    found = []
    for a, b in zip(got, want, strict=True):
        if a.actions_for(target) != b.actions_for(target):
            found.append(f"{a.group.name} instructions: windowed={kinds(a.actions_for(target))} "
                         f"whole={kinds(b.actions_for(target))}")
        mine = [s for s in a.states if s.target_system_id == target]
        theirs = [s for s in b.states if s.target_system_id == target]
        for x, y in zip(mine, theirs, strict=False):
            if x != y:
                found.append(f"{a.group.name} state {x.dataset}: {_diff(x, y)}")
        if len(mine) != len(theirs):
            found.append(f"{a.group.name}: {len(mine)} states windowed, {len(theirs)} whole")
    return found


def kinds(actions: Sequence[pt.Action]) -> list[tuple[str, str, int, str | None]]:
    return [(a.dataset, a.action_type.value, a.sequence, a.snapshot_name) for a in actions]


# -- fleets -------------------------------------------------------------------------------------


def hourly(count: int, *, end: datetime = NOW, daily_every: int = 24) -> list[tuple[str, datetime]]:
    """``count`` sanoid-style names ending at ``end``; every ``daily_every``-th is a daily."""
    found = []
    for index in range(count):
        moment = end - (count - 1 - index) * HOUR
        kind = "daily" if index % daily_every == 0 else "hourly"
        found.append((f"autosnap_{moment:%Y-%m-%d_%H:%M:%S}_{kind}", moment))
    return found


def put(member: Host, logical: str, history: Sequence[tuple[str, datetime]], *,
        own: bool = False, guids: bool = True) -> None:
    for name, moment in history:
        member.add(logical, name, when=moment, own=own, guids=guids)


def windows_cut(witness: Witness) -> int:
    """How many (system, dataset) windows are shorter than their history (0: a vacuous test)."""
    with witness.db.read() as session:
        every = list(session.scalars(select(SyncGroup.id)))
        groups = plan_inputs.groups_for(session, group_ids=every)
        loaded = plan_inputs.load_inputs(session, groups, witness.settings, witness.clock())
        return len(loaded.truncated)


def assert_same_plans(witness: Witness) -> None:
    problems = compare_everything(witness)
    assert problems == [], "\n".join(problems)


# -- targeted cases -----------------------------------------------------------------------------


def small_fleet(witness: Witness) -> tuple[Host, Host]:
    witness.clock.now = NOW
    src = host(witness, "src", "tank", ssh_hostname="src.example")
    dst = host(witness, "dst", "backup", ssh_hostname="dst.example")
    return src, dst


def test_lagging_and_in_sync_targets(witness: Witness) -> None:
    src, dst = small_fleet(witness)
    history = hourly(24 * 20)
    put(src, "data", history)
    put(dst, "data", history[:-100])  # 100 hours behind: a window of ~5 days
    put(src, "data/a", history)
    put(dst, "data/a", history)
    src.report(), dst.report()
    group(witness, src, src, dst)
    assert windows_cut(witness) == 4
    assert_same_plans(witness)


def test_snapshot_pattern_matching_only_old_snapshots(witness: Witness) -> None:
    """Dailies are kept 30 days, hourlies 2 days: the newest daily is older than the window."""
    src, dst = small_fleet(witness)
    history = hourly(24 * 10, daily_every=24 * 4)  # a "daily" every 4 days
    dailies = [h for h in history if h[0].endswith("_daily")]
    put(src, "data", sorted(set(dailies + history[-30:]), key=lambda h: h[1]))
    put(dst, "data", sorted(set(dailies[:-1] + history[-30:-2]), key=lambda h: h[1]))
    src.report(), dst.report()
    group(witness, src, src, dst, snapshot_pattern="*_daily")
    assert_same_plans(witness)


@pytest.mark.xfail(strict=True, reason=(
    "known limitation (docs/planner.md): guid_mismatch is only seen among the snapshots in the"
    " window of newest snapshots; a same-name/other-guid pair older than the common base does"
    " not block the incremental (ZFS itself only needs the base)"))
def test_old_guid_mismatch(witness: Witness) -> None:
    """Both hosts took a snapshot of the same name long ago, before replication began."""
    src, dst = small_fleet(witness)
    history = hourly(24 * 10)
    put(src, "data", history)
    put(dst, "data", history[:1], own=True)  # same name, another guid, 10 days ago
    put(dst, "data", history[24:-3])
    src.report(), dst.report()
    group(witness, src, src, dst)
    assert_same_plans(witness)


@pytest.mark.parametrize("claim", ["in_sync", "error"])
def test_claim_about_a_snapshot_older_than_the_window(witness: Witness, claim: str) -> None:
    src, dst = small_fleet(witness)
    history = hourly(24 * 10)
    then = history[23][1] + timedelta(minutes=10)
    at(witness, then, src, dst)
    put(src, "data", history[:24])
    put(dst, "data", history[:23])
    src.report(), dst.report()
    group_id = group(witness, src, src, dst)
    delivered = src.snapshot_id("data", history[23][0])
    if claim == "in_sync":
        put(dst, "data", history[23:24])
        dst.report()
    report_state(witness, dst, group_id, claim, snapshot_id=delivered, error_message="timeout")
    if claim == "error":  # a retry by hand delivered it; nobody reported in_sync
        put(dst, "data", history[23:24])
        dst.report()
    # Days later the target was kept up to date by other means (no claims) and is now a
    # little behind: the claimed snapshot is still there, far older than the window.
    at(witness, NOW, src, dst)
    put(src, "data", history[24:])
    put(dst, "data", history[24:-2])
    src.report(), dst.report()
    assert_same_plans(witness)


def test_target_with_two_pools_and_no_root(witness: Witness) -> None:
    witness.clock.now = NOW
    src = host(witness, "src", "tank", ssh_hostname="src.example")
    dst = host(witness, "dst", "backup")
    history = hourly(24 * 3)
    put(src, "data", history)
    put(dst, "data", history[:-5])
    dst.add("other", "x01")
    src.report()
    dst.snapshots["elsewhere"] = [{**item, "dataset": "extra/data", "pool": "extra"}
                                  for item in dst.snapshots["data"][:3]]
    dst.report()
    body = {"name": "g1", "directional": True, "hub_system_id": src.id,
            "members": [{"system_id": src.id, "root": "tank"}, {"system_id": dst.id}]}
    assert witness.client.post(f"{API}/sync-groups", json=body, headers=ADMIN).status_code == 201
    assert_same_plans(witness)


def test_default_root_of_a_system_in_two_groups(witness: Witness) -> None:
    """dst has pools backup and extra; group 1 names its root, group 2 leaves it default."""
    witness.clock.now = NOW
    src = host(witness, "src", "tank", ssh_hostname="src.example")
    dst = host(witness, "dst", "backup")
    history = hourly(24 * 3)
    put(src, "data", history)
    put(src, "data2", history)
    put(dst, "data", history[:-5])
    dst.snapshots["extra"] = [{**item, "dataset": "extra/data", "pool": "extra"}
                              for item in dst.snapshots["data"][:3]]
    src.report(), dst.report()
    group(witness, src, src, dst, name="explicit", datasets=["data"])
    at(witness, NOW + timedelta(minutes=1), src, dst)  # the older group owns shared edges
    body = {"name": "default-root", "directional": True, "hub_system_id": src.id,
            "members": [{"system_id": src.id, "root": "tank"}, {"system_id": dst.id}]}
    assert witness.client.post(f"{API}/sync-groups", json=body, headers=ADMIN).status_code == 201
    assert_same_plans(witness)


# -- random fleets ------------------------------------------------------------------------------

LOGICALS = ("data", "data/a", "data/a/b", "vm/disk0", "vm/disk 1:x")
SCENARIOS = ("in_sync", "lag", "lag", "lag", "missing", "diverged", "no_common", "pruned_away",
             "renamed", "thinned")


def item(member: Host, logical: str, name: str, moment: datetime, *, guid: int | None,
         txg: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": name, "pool": member.root.split("/")[0], "dataset": member.dataset(logical),
        "timestamp": moment.isoformat().replace("+00:00", "Z"), "used": 4096, "referenced": 8192,
    }
    if guid is not None:
        found["guid"] = str(guid)
    if txg:
        found["createtxg"] = int(moment.timestamp())
    return found


class Style:
    """How a host reports: the agent (guids, createtxg) or the guide's cron script (neither,
    creation times to the minute)."""

    def __init__(self, cron: bool, skew: int) -> None:
        self.cron, self.skew = cron, skew

    def copy(self, member: Host, logical: str, snaps: Sequence[tuple[str, datetime]]) -> None:
        from tests.api.test_sync import guid_of

        for name, moment in snaps:
            when = moment + timedelta(seconds=self.skew)
            if self.cron:
                when = when.replace(second=0)
            guid = None if self.cron else guid_of(logical, name)
            member.snapshots.setdefault(logical, []).append(
                item(member, logical, name, when, guid=guid, txg=not self.cron))

    def own(self, member: Host, logical: str, after: datetime, count: int,
            rng: random.Random) -> None:
        for index in range(count):
            moment = after + timedelta(minutes=17 + 61 * index)
            name = f"local_{moment:%Y-%m-%d_%H:%M}"
            guid = None if self.cron else rng.getrandbits(64)
            member.snapshots.setdefault(logical, []).append(
                item(member, logical, name, moment, guid=guid, txg=not self.cron))


def keep(snaps: Sequence[tuple[str, datetime]], hourlies: int) -> list[tuple[str, datetime]]:
    """A sanoid-like retention: every daily, and the newest ``hourlies`` hourlies."""
    cutoff = len(snaps) - hourlies
    return [s for i, s in enumerate(snaps) if s[0].endswith("_daily") or i >= cutoff]


def target_copy(rng: random.Random, member: Host, style: Style, logical: str,
                history: Sequence[tuple[str, datetime]], hub_kept: set[str]) -> str:
    scenario = rng.choice(SCENARIOS)
    if scenario == "renamed" and style.cron:
        scenario = "lag"
    lag = rng.choice((1, 2, 5, 23, 30, 60, 150))
    lag = min(lag, len(history) - 2)
    if scenario == "missing":
        return scenario
    if scenario == "in_sync":
        style.copy(member, logical, keep(history, rng.choice((24, 1000))))
    elif scenario in ("lag", "thinned"):
        got = history[: len(history) - lag]
        style.copy(member, logical, keep(got, 10) if scenario == "thinned" else got)
    elif scenario == "diverged":
        got = history[: len(history) - lag]
        style.copy(member, logical, got)
        style.own(member, logical, got[-1][1], rng.randrange(1, 4), rng)
    elif scenario == "no_common":
        style.own(member, logical, history[0][1] - 50 * HOUR, rng.randrange(1, 5), rng)
    elif scenario == "pruned_away":  # only snapshots the hub has pruned since: no base
        old = [s for s in history if s[0] not in hub_kept][: rng.randrange(1, 10)]
        if not old:
            return "missing"
        style.copy(member, logical, old)
    elif scenario == "renamed":  # the base was renamed on the target (same guid)
        got = list(history[: len(history) - lag])
        style.copy(member, logical, got)
        member.snapshots[logical][-1]["name"] = "renamed-" + member.snapshots[logical][-1]["name"]
    return scenario


def random_fleet(witness: Witness, seed: int) -> random.Random:
    """A hub and three targets (two agents, one cron script) in a directional group, an
    overlapping second group, and a bidirectional pair; then claims and resolutions."""
    rng = random.Random(seed)
    witness.clock.now = NOW
    hub = host(witness, "hub", "tank", ssh_hostname="hub.example")
    targets = [
        (host(witness, "t1", "backup", ssh_hostname="t1.example"), Style(False, 0)),
        (host(witness, "t2", "vault/site a", ssh_hostname="t2.example"), Style(False, 0)),
        (host(witness, "t3", "cold", ssh_hostname="t3.example"),
         Style(True, rng.randrange(-90, 90))),
    ]
    peers = [host(witness, "p1", "tank", ssh_hostname="p1.example"),
             host(witness, "p2", "pool2", ssh_hostname="p2.example")]
    agent = Style(False, 0)
    for logical in LOGICALS:
        # "daily" every day, or (sparse) every week: a pattern may then match old ones only.
        history = hourly(rng.randrange(48, 24 * 15), end=NOW - rng.randrange(0, 4) * HOUR,
                         daily_every=rng.choice((24, 24 * 7)))
        kept = keep(history, rng.choice((36, 100, 10_000)))
        agent.copy(hub, logical, kept)
        for member, style in targets:
            target_copy(rng, member, style, logical, history, {s[0] for s in kept})
        # Bidirectional: each peer has a prefix; the longer one is the source.
        cut = [len(history) - rng.randrange(0, 30) for _ in peers]
        for peer, upto in zip(peers, cut, strict=True):
            agent.copy(peer, logical, history[: max(upto, 1)])
        if rng.random() < 0.2:  # diverged peer
            agent.own(peers[1], logical, history[max(cut[1], 1) - 1][1], 1, rng)
    two_pools = rng.random() < 0.5  # t1 also has a pool "extra": no default root
    if two_pools:
        targets[0][0].snapshots["extra"] = [
            item(targets[0][0], "x", "old", NOW - 400 * HOUR, guid=1, txg=True)
            | {"dataset": "extra/misc", "pool": "extra"}]
    for member in [hub, *(m for m, _ in targets), *peers]:
        member.report()
    pattern = rng.choice(("", "", "*_daily", "autosnap_*"))
    group(witness, hub, hub, *(m for m, _ in targets), name="main",
          snapshot_pattern=pattern, allow_rollback=rng.random() < 0.3)
    at(witness, NOW + timedelta(seconds=30), hub, *(m for m, _ in targets), *peers)
    overlap = {"name": "overlap", "directional": True, "hub_system_id": hub.id,
               "datasets": ["vm/*"], "snapshot_pattern": rng.choice(("", "*_daily")),
               "members": [{"system_id": hub.id, "root": "tank"},
                           {"system_id": targets[0][0].id}]}  # default root
    response = witness.client.post(f"{API}/sync-groups", json=overlap, headers=ADMIN)
    assert response.status_code == 201, response.text
    group(witness, None, *peers, name="both-ways")
    _claims_and_resolutions(witness, rng, [m for m, _ in targets])
    return rng


def _claims_and_resolutions(witness: Witness, rng: random.Random,
                            targets: Sequence[Host]) -> None:
    from tests.api.test_sync import instructions

    for member in targets:
        for action in instructions(witness, member)["actions"]:
            if action["snapshot_id"] is None or rng.random() < 0.5:
                continue
            claim = rng.choice(("syncing", "in_sync", "error"))
            response = report_state(witness, member, action["sync_group_id"], claim,
                                    snapshot_id=action["snapshot_id"],
                                    error_message="cannot receive" if claim == "error" else None)
            assert response.status_code == 200, response.text
    open_ = witness.client.get(f"{API}/conflicts", params={"status": "open"}).json()
    for conflict in open_:
        if rng.random() < 0.6:
            strategy = rng.choice(("rollback_target", "rename_target_aside", "ignore", "manual"))
            response = witness.client.post(f"{API}/conflicts/{conflict['id']}/resolve",
                                           json={"strategy": strategy}, headers=ADMIN)
            assert response.status_code == 200, response.text


@pytest.mark.parametrize("seed", range(int(os.environ.get("ZFS_SYNC_TEST_WINDOW_SEEDS", "4"))))
def test_random_fleets_plan_the_same_as_whole_histories(witness: Witness, seed: int) -> None:
    rng = random_fleet(witness, seed)
    assert windows_cut(witness) > 10
    assert_same_plans(witness)
    # Later: some hosts went quiet, the syncing leases and cadences ran out, lags grew.
    later = NOW + rng.choice((1, 3, 30)) * HOUR
    with witness.db.read() as session:
        systems = list(session.scalars(select(System.id)))
    witness.clock.now = later
    for system_id in systems:
        if rng.random() < 0.8:
            witness.client.post(f"{API}/systems/{system_id}/heartbeat",
                                headers={"X-API-Key": witness.keys[system_id]})
    assert_same_plans(witness)
