"""The planner, table-driven: histories in, actions, states and conflicts out (DESIGN.md s8)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from zfs_sync.domain.plan_types import (
    Action,
    Claim,
    ConflictType,
    DatasetFacts,
    EdgeState,
    Group,
    GroupPlan,
    Member,
    PriorState,
    Resolution,
    ResolutionStrategy,
    SnapshotFact,
    SnapshotRef,
    SyncStatus,
    SystemFacts,
    build_system_facts,
)
from zfs_sync.domain.planner import apply_overlaps, plan_group
from zfs_sync.domain.retention import ProtectionReason, may_destroy, protected_snapshots

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=4)  # 2024-01-05
SECOND = timedelta(seconds=1)


# --- building blocks ------------------------------------------------------------------------


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def guid_of(name: str) -> int:
    """A stable 64-bit guid per snapshot name (about half of them above 2**63)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def snap(
    name: str, hour: float, guid: int | None = -1, txg: int | None = -1, size: int = 100
) -> SnapshotFact:
    return SnapshotFact(
        name,
        at(hour),
        id=f"id-{name}",
        guid=guid_of(name) if guid == -1 else guid,
        createtxg=int(hour * 10) if txg == -1 else txg,
        size=size,
        referenced=size * 10,
    )


def line(names: str, start: float = 1) -> list[SnapshotFact]:
    """``"a b c"`` -> a, b, c created one hour apart from hour ``start``."""
    return [snap(n, start + i) for i, n in enumerate(names.split())]


def host(
    system_id: str,
    datasets: Mapping[str, Sequence[SnapshotFact]],
    empty: Sequence[str] = (),
    encrypted: Sequence[str] = (),
    received_raw: Sequence[str] = (),
) -> SystemFacts:
    rows = [(d, s) for d, snaps in datasets.items() for s in snaps]
    names = set(datasets) | set(empty)
    infos = [DatasetFacts(d, d in encrypted, True if d in received_raw else None) for d in names]
    return build_system_facts(system_id, rows, infos)


def member(system_id: str, root: str | None = None, **kw: object) -> Member:
    base = Member(
        system_id,
        f"host{system_id}",
        root,
        True,
        f"{system_id.lower()}.example",
        "zfs",
        22,
        "zfs",
        {},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def group(**kw: object) -> Group:
    base = Group("g1", "backups", T0, directional=True, hub_system_id="A")
    return replace(base, **kw)  # type: ignore[arg-type]


A = member("A", "tank")
B = member("B", "backup")


def run(
    facts: Sequence[SystemFacts],
    members: Sequence[Member] = (A, B),
    grp: Group | None = None,
    now: datetime = NOW,
    states: Sequence[PriorState] = (),
    resolutions: Sequence[Resolution] = (),
    grace: int = 3600,
) -> GroupPlan:
    return plan_group(
        grp or group(), members, {f.system_id: f for f in facts}, states, resolutions, now, grace
    )


Brief = tuple[str, str, str, str | None, str | None, int]


def brief(plan: GroupPlan) -> list[Brief]:
    return [
        (
            a.target_system_id,
            a.action_type,
            a.dataset,
            a.snapshot_name,
            a.incremental_base,
            a.sequence,
        )
        for a in plan.actions
    ]


def state(plan: GroupPlan, dataset: str = "data", target: str = "B") -> EdgeState:
    [found] = [s for s in plan.states if s.dataset == dataset and s.target_system_id == target]
    return found


def remote(action: Action) -> str:
    """The remote `zfs send` command inside the ssh stage."""
    [ssh] = [s for s in action.pipeline if s[0] == "ssh"]
    return ssh[-1]


# --- the basic edge rules -------------------------------------------------------------------


CASES: list[
    tuple[
        str, dict[str, list[SnapshotFact]], dict[str, list[SnapshotFact]], list[Brief], SyncStatus
    ]
] = [
    (
        "target lacks the dataset: full send of the oldest, then -I to the newest",
        {"tank/data": line("a b c")},
        {"backup/other": line("z")},
        [("B", "full_send", "data", "a", None, 1), ("B", "incremental_send", "data", "c", "a", 2)],
        SyncStatus.OUT_OF_SYNC,
    ),
    (
        "target behind with a common base: one -I step",
        {"tank/data": line("a b c")},
        {"backup/data": line("a b")},
        [("B", "incremental_send", "data", "c", "b", 1)],
        SyncStatus.OUT_OF_SYNC,
    ),
    (
        "in sync: nothing to do",
        {"tank/data": line("a b c")},
        {"backup/data": line("a b c")},
        [],
        SyncStatus.IN_SYNC,
    ),
    (
        "target pruned its oldest: still in sync",
        {"tank/data": line("a b c")},
        {"backup/data": line("b c", 2)},
        [],
        SyncStatus.IN_SYNC,
    ),
    (
        "source pruned the old ones: the base is still common",
        {"tank/data": line("b c d", 2)},
        {"backup/data": line("a b")},
        [("B", "incremental_send", "data", "d", "b", 1)],
        SyncStatus.OUT_OF_SYNC,
    ),
    (
        "only one snapshot: a lone full send",
        {"tank/data": line("a")},
        {"backup/x": line("z")},
        [("B", "full_send", "data", "a", None, 1)],
        SyncStatus.OUT_OF_SYNC,
    ),
]


@pytest.mark.parametrize(
    ("source", "target", "expected", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_edge_rules(
    source: dict[str, list[SnapshotFact]],
    target: dict[str, list[SnapshotFact]],
    expected: list[Brief],
    status: SyncStatus,
) -> None:
    plan = run([host("A", source), host("B", target)])
    assert brief(plan) == expected
    assert state(plan).status == status
    assert plan.conflicts == ()


def test_full_then_incremental_commands() -> None:
    plan = run([host("A", {"tank/data": line("a b c")}), host("B", {"backup/x": line("z")})])
    full, inc = plan.actions
    assert full.pipeline == (
        ("ssh", "-n", "-o", "BatchMode=yes", "-p", "22", "zfs@a.example", "zfs send tank/data@a"),
        ("zfs", "receive", "-u", "backup/data"),
    )
    assert (full.is_incremental, full.snapshot_id, full.estimated_size) == (False, "id-a", 1000)
    assert remote(inc) == "zfs send -I tank/data@a tank/data@c"
    assert inc.pipeline[0] == ("zfs", "rollback", "backup/data@a")
    assert (inc.is_incremental, inc.include_intermediate, inc.rollback_to_base) == (
        True,
        True,
        True,
    )
    assert inc.snapshot_id == "id-c" and inc.estimated_size == 200
    assert inc.sync_command == (
        "zfs rollback backup/data@a && ssh -n -o BatchMode=yes -p 22 zfs@a.example "
        "'zfs send -I tank/data@a tank/data@c' | zfs receive -u backup/data"
    )
    assert (full.source_pool, full.target_pool) == ("tank", "backup")


def test_action_fields_and_ids_are_deterministic() -> None:
    facts = [host("A", {"tank/data": line("a b c")}), host("B", {"backup/x": line("z")})]
    first, again = run(facts), run(facts)
    assert first.actions == again.actions
    assert len({a.action_id for a in first.actions}) == 2
    inc = first.actions[1]
    assert (inc.source_ssh_hostname, inc.source_ssh_user, inc.source_ssh_port) == (
        "a.example",
        "zfs",
        22,
    )
    assert (inc.sync_group_id, inc.source_system_id, inc.target_system_id) == ("g1", "A", "B")
    assert (inc.source_dataset, inc.target_dataset) == ("tank/data", "backup/data")


def test_pools_named_differently_on_every_host() -> None:
    members = [member("A"), member("B"), member("C")]  # roots default to the only pool
    facts = [
        host("A", {"tank/data": line("a b c")}),
        host("B", {"backup/data": line("a b")}),
        host("C", {"vault/misc": line("q")}),
    ]
    plan = run(facts, members)
    assert brief(plan) == [
        ("B", "incremental_send", "data", "c", "b", 1),
        ("C", "full_send", "data", "a", None, 1),
        ("C", "incremental_send", "data", "c", "a", 2),
    ]
    assert [a.target_dataset for a in plan.actions] == ["backup/data", "vault/data", "vault/data"]
    assert state(plan, target="C").target_dataset == "vault/data"


def test_nested_datasets_parents_before_children() -> None:
    facts = [
        host(
            "A",
            {
                "tank/a/b/c": line("x"),
                "tank/a-b": line("x"),
                "tank/a": line("x y"),
                "tank/a/b": line("x y"),
            },
        ),
        host("B", {"backup/misc": line("q")}),
    ]
    plan = run(facts)
    assert [(a.dataset, a.sequence) for a in plan.actions] == [
        ("a", 1),
        ("a", 2),
        ("a/b", 1),
        ("a/b", 2),
        ("a/b/c", 1),
        ("a-b", 1),
    ]
    assert [a.target_dataset for a in plan.actions][-2:] == ["backup/a/b/c", "backup/a-b"]
    # The parents arrive earlier in the same answer: no "parent missing" note.
    assert all(a.reason is None for a in plan.actions)


def test_member_root_with_a_backup_prefix() -> None:
    b = member("B", "backup/hostA")
    facts = [
        host("A", {"tank/data": line("a b"), "tank/vm": line("a")}),
        host("B", {"backup/hostA/data": line("a"), "backup/other": line("z")}),
    ]
    plan = run(facts, [A, b])
    assert brief(plan) == [
        ("B", "incremental_send", "data", "b", "a", 1),
        ("B", "full_send", "vm", "a", None, 1),
    ]
    inc, full = plan.actions
    assert inc.target_dataset == "backup/hostA/data"
    assert full.pipeline[-1] == ("zfs", "receive", "-u", "backup/hostA/vm")
    assert full.reason is None  # backup/hostA exists (it holds data)


def test_missing_parent_is_noted_for_the_agent() -> None:
    b = member("B", "backup/hostA")
    plan = run([host("A", {"tank/data": line("a")}), host("B", {"backup/x": line("z")})], [A, b])
    [full] = plan.actions
    assert full.reason is not None and "backup/hostA is missing" in full.reason
    assert "zfs create -p" in full.reason and full.sync_command is not None


def test_the_root_dataset_itself_is_not_replicated() -> None:
    plan = run(
        [host("A", {"tank": line("a"), "tank/data": line("a")}), host("B", {"backup/x": line("z")})]
    )
    assert {a.dataset for a in plan.actions} == {"data"}


# --- conflicts ------------------------------------------------------------------------------


def test_same_name_different_guid_after_the_base_is_a_divergence() -> None:
    theirs = snap("b", 2, guid=12345)
    plan = run(
        [
            host("A", {"tank/data": line("a b c")}),
            host("B", {"backup/data": [snap("a", 1), theirs]}),
        ]
    )
    assert plan.actions == ()
    [conflict] = plan.conflicts
    assert conflict.conflict_type == ConflictType.TARGET_DIVERGED
    assert conflict.details.mismatched == ("b",)
    assert conflict.details.would_discard == (SnapshotRef("b", 12345),)
    assert state(plan).status == SyncStatus.CONFLICT


def test_same_name_different_guid_before_the_base_blocks_the_edge() -> None:
    # The target's old "b" would collide with the source's new "b" on receive.
    target = [snap("b", 0.5, guid=999, txg=1), snap("a", 1, txg=2)]
    plan = run(
        [host("A", {"tank/data": [snap("a", 1), snap("b", 5)]}), host("B", {"backup/data": target})]
    )
    assert plan.actions == ()
    [conflict] = plan.conflicts
    assert conflict.conflict_type == ConflictType.GUID_MISMATCH
    assert conflict.details.mismatched == ("b",)
    assert "different guids" in (state(plan).reason or "")


DIVERGED = [
    host("A", {"tank/data": line("a b c")}),
    host("B", {"backup/data": [snap("a", 1), snap("x", 2.5)]}),
]


def test_target_with_its_own_newer_snapshot_is_a_conflict_without_action() -> None:
    plan = run(DIVERGED)
    assert plan.actions == ()
    [conflict] = plan.conflicts
    assert conflict.conflict_type == ConflictType.TARGET_DIVERGED
    assert conflict.details.target_only == ("x",)
    assert conflict.details.base == "a" and conflict.details.source_newest == "c"
    assert not conflict.planned
    st = state(plan)
    assert st.status == SyncStatus.CONFLICT and st.lag_seconds == (NOW - at(2)).total_seconds()


ROLLBACK_EXPECTED = [
    ("B", "rollback", "data", "a", None, 1),
    ("B", "incremental_send", "data", "c", "a", 2),
]


@pytest.mark.parametrize(
    ("grp", "resolutions"),
    [
        (group(allow_rollback=True), []),
        (
            group(),
            [
                Resolution(
                    "data",
                    "B",
                    ConflictType.TARGET_DIVERGED,
                    ResolutionStrategy.ROLLBACK_TARGET,
                    (SnapshotRef("x", guid_of("x")),),
                )
            ],
        ),
    ],
    ids=["allow_rollback", "rollback_target resolution"],
)
def test_allowed_rollback_then_incremental(grp: Group, resolutions: list[Resolution]) -> None:
    plan = run(DIVERGED, grp=grp, resolutions=resolutions)
    assert brief(plan) == ROLLBACK_EXPECTED
    rollback, inc = plan.actions
    assert rollback.pipeline == (("zfs", "rollback", "-r", "backup/data@a"),)
    assert rollback.snapshot_id is None and rollback.sync_command == "zfs rollback -r backup/data@a"
    assert inc.rollback_to_base and inc.pipeline[0] == ("zfs", "rollback", "backup/data@a")
    [conflict] = plan.conflicts
    assert conflict.planned and state(plan).status == SyncStatus.OUT_OF_SYNC


def test_rollback_resolution_reopens_when_the_target_gained_snapshots() -> None:
    facts = [
        DIVERGED[0],
        host("B", {"backup/data": [snap("a", 1), snap("x", 2.5), snap("y", 2.7)]}),
    ]
    allowed = Resolution(
        "data",
        "B",
        ConflictType.TARGET_DIVERGED,
        ResolutionStrategy.ROLLBACK_TARGET,
        (SnapshotRef("x", guid_of("x")),),
    )
    plan = run(facts, resolutions=[allowed])
    assert plan.actions == ()
    [conflict] = plan.conflicts
    assert conflict.reopened and not conflict.planned
    assert conflict.details.target_only == ("x", "y")
    assert "gained snapshots" in (state(plan).reason or "")


@pytest.mark.parametrize("strategy", [ResolutionStrategy.IGNORE, ResolutionStrategy.MANUAL])
def test_ignore_and_manual_never_act(strategy: ResolutionStrategy) -> None:
    res = Resolution("data", "B", ConflictType.TARGET_DIVERGED, strategy)
    plan = run(DIVERGED, resolutions=[res])
    assert plan.actions == ()
    assert plan.conflicts[0].resolution == strategy


NO_COMMON = [host("A", {"tank/data": line("a b")}), host("B", {"backup/data": line("x y", 5)})]
RENAME = Resolution(
    "data", "B", ConflictType.NO_COMMON_SNAPSHOT, ResolutionStrategy.RENAME_TARGET_ASIDE
)


def test_no_common_snapshot_is_a_conflict() -> None:
    plan = run(NO_COMMON)
    assert plan.actions == ()
    [conflict] = plan.conflicts
    assert conflict.conflict_type == ConflictType.NO_COMMON_SNAPSHOT
    assert conflict.details.rename_to == "backup/data.zfs-sync-20240105"
    assert conflict.details.target_only == ("x", "y")


def test_no_common_snapshot_with_an_empty_target_dataset_is_a_conflict() -> None:
    plan = run([NO_COMMON[0], host("B", {"backup/x": line("z")}, empty=["backup/data"])])
    assert plan.actions == ()
    assert plan.conflicts[0].conflict_type == ConflictType.NO_COMMON_SNAPSHOT


def test_rename_aside_then_full_send() -> None:
    plan = run(NO_COMMON, resolutions=[RENAME])
    assert brief(plan) == [
        ("B", "rename", "data", None, None, 1),
        ("B", "full_send", "data", "a", None, 2),
        ("B", "incremental_send", "data", "b", "a", 3),
    ]
    rename = plan.actions[0]
    assert rename.pipeline == (("zfs", "rename", "backup/data", "backup/data.zfs-sync-20240105"),)
    assert plan.conflicts[0].planned


def test_rename_aside_picks_a_free_name_and_holds_the_children() -> None:
    facts = [
        host("A", {"tank/data": line("a b"), "tank/data/vm": line("a b")}),
        host(
            "B",
            {
                "backup/data": line("x y", 5),
                "backup/data/vm": line("a"),
                "backup/data.zfs-sync-20240105": line("old"),
            },
        ),
    ]
    plan = run(facts, resolutions=[RENAME])
    assert plan.actions[0].pipeline[0][-1] == "backup/data.zfs-sync-20240105-2"
    assert {a.dataset for a in plan.actions} == {"data"}
    assert "being moved aside" in (state(plan, "data/vm").reason or "")


def test_rename_aside_that_would_be_too_long_stays_a_conflict() -> None:
    long = "backup/" + "d" * 240
    facts = [host("A", {"tank/" + "d" * 240: line("a")}), host("B", {long: line("x")})]
    plan = run(facts, resolutions=[replace(RENAME, dataset="d" * 240)])
    assert plan.actions == ()
    [conflict] = plan.conflicts
    assert conflict.details.rename_to is None and not conflict.planned
    assert "too long" in (state(plan, "d" * 240).reason or "")


# --- filters --------------------------------------------------------------------------------


def test_snapshot_pattern_gives_a_chain_of_single_steps() -> None:
    source = line("daily-1 hourly-1 daily-2 hourly-2 daily-3")
    grp = group(snapshot_pattern="daily-*")
    plan = run([host("A", {"tank/data": source}), host("B", {"backup/data": source[:1]})], grp=grp)
    assert brief(plan) == [
        ("B", "incremental_send", "data", "daily-2", "daily-1", 1),
        ("B", "incremental_send", "data", "daily-3", "daily-2", 2),
    ]
    first, second = plan.actions
    assert remote(first) == "zfs send -i tank/data@daily-1 tank/data@daily-2"
    assert not first.include_intermediate and first.rollback_to_base
    assert second.rollback_to_base  # the previous step's snapshot is then the newest


def test_snapshot_pattern_full_send_then_chain() -> None:
    source = line("hourly-0 daily-1 hourly-1 daily-2")
    plan = run(
        [host("A", {"tank/data": source}), host("B", {"backup/x": line("z")})],
        grp=group(snapshot_pattern="daily-*"),
    )
    assert brief(plan) == [
        ("B", "full_send", "data", "daily-1", None, 1),
        ("B", "incremental_send", "data", "daily-2", "daily-1", 2),
    ]


def test_snapshot_pattern_chain_is_capped_at_100_steps() -> None:
    source = [snap(f"daily-{i:03}", i) for i in range(150)]
    plan = run(
        [host("A", {"tank/data": source}), host("B", {"backup/data": source[:1]})],
        grp=group(snapshot_pattern="daily-*"),
    )
    assert len(plan.actions) == 100
    assert plan.actions[-1].snapshot_name == "daily-100"


def test_pattern_in_sync_ignores_non_matching_snapshots() -> None:
    source = line("daily-1 hourly-1")
    plan = run(
        [host("A", {"tank/data": source}), host("B", {"backup/data": source[:1]})],
        grp=group(snapshot_pattern="daily-*"),
    )
    assert plan.actions == () and state(plan).status == SyncStatus.IN_SYNC


def test_pattern_uses_a_non_matching_common_snapshot_as_base() -> None:
    source = line("daily-1 hourly-1 daily-2")
    plan = run(
        [host("A", {"tank/data": source}), host("B", {"backup/data": source[:2]})],
        grp=group(snapshot_pattern="daily-*"),
    )
    assert brief(plan) == [("B", "incremental_send", "data", "daily-2", "hourly-1", 1)]


def test_dataset_filter() -> None:
    facts = [
        host(
            "A",
            {
                "tank/data": line("a"),
                "tank/data/vm1": line("a"),
                "tank/data/vm2": line("a"),
                "tank/other": line("a"),
            },
        ),
        host("B", {"backup/data": line("a")}),
    ]
    plan = run(facts, grp=group(datasets=("data/*",)))
    assert brief(plan) == [
        ("B", "full_send", "data/vm1", "a", None, 1),
        ("B", "full_send", "data/vm2", "a", None, 1),
    ]
    assert {s.dataset for s in plan.states} == {"data/vm1", "data/vm2"}


# --- bidirectional --------------------------------------------------------------------------


def test_bidirectional_source_is_the_newest_holder_per_dataset() -> None:
    members = [member("A", "tank"), member("B", "tank"), member("C", "pool")]
    facts = [
        host("A", {"tank/ds1": [snap("a", 1), snap("b", 5)], "tank/ds2": [snap("p", 1)]}),
        host("B", {"tank/ds1": [snap("a", 1)], "tank/ds2": [snap("p", 1), snap("q", 6)]}),
        host("C", {}, empty=["pool"]),
    ]
    plan = run(facts, members, grp=group(directional=False, hub_system_id=None))
    assert brief(plan) == [
        ("A", "incremental_send", "ds2", "q", "p", 1),
        ("B", "incremental_send", "ds1", "b", "a", 1),
        ("C", "full_send", "ds1", "a", None, 1),
        ("C", "incremental_send", "ds1", "b", "a", 2),
        ("C", "full_send", "ds2", "p", None, 1),
        ("C", "incremental_send", "ds2", "q", "p", 2),
    ]
    assert {(s.dataset, s.target_system_id): s.source_system_id for s in plan.states} == {
        ("ds1", "B"): "A",
        ("ds1", "C"): "A",
        ("ds2", "A"): "B",
        ("ds2", "C"): "B",
    }


def test_bidirectional_same_newest_time_on_different_snapshots_is_a_conflict() -> None:
    members = [member("A", "tank"), member("B", "tank")]
    facts = [
        host("A", {"tank/ds": [snap("a", 1), snap("b", 5)]}),
        host("B", {"tank/ds": [snap("a", 1), snap("c", 5)]}),
    ]
    plan = run(facts, members, grp=group(directional=False, hub_system_id=None))
    assert plan.actions == ()
    assert {(c.target_system_id, c.conflict_type) for c in plan.conflicts} == {
        ("A", ConflictType.NEWEST_TIE),
        ("B", ConflictType.NEWEST_TIE),
    }
    assert plan.conflicts[0].details.tied == (("A", "b"), ("B", "c"))
    assert all(s.status == SyncStatus.CONFLICT for s in plan.states)


def test_bidirectional_same_snapshot_on_two_hosts_prefers_an_online_holder() -> None:
    members = [member("A", "tank", online=False), member("B", "tank"), member("C", "tank")]
    facts = [
        host("A", {"tank/ds": line("a b")}),
        host("B", {"tank/ds": line("a b")}),
        host("C", {"tank/ds": line("a")}),
    ]
    plan = run(facts, members, grp=group(directional=False, hub_system_id=None))
    assert [(a.source_system_id, a.target_system_id) for a in plan.actions] == [("B", "C")]
    assert plan.conflicts == ()


# --- holds: disabled, offline, roots, ssh ---------------------------------------------------

BEHIND = [host("A", {"tank/data": line("a b c")}), host("B", {"backup/data": line("a b")})]


@pytest.mark.parametrize(
    ("grp", "members", "reason"),
    [
        (group(enabled=False), (A, B), "group disabled"),
        (group(), (replace(A, online=False), B), "source offline"),
        (group(), (A, replace(B, online=False)), "target offline"),
    ],
)
def test_no_actions_and_the_reason_in_the_state(
    grp: Group, members: tuple[Member, ...], reason: str
) -> None:
    plan = run(BEHIND, members, grp=grp)
    assert plan.actions == ()
    st = state(plan)
    assert (st.status, st.reason) == (SyncStatus.OUT_OF_SYNC, reason)
    assert st.lag_seconds > 0  # lag is a fact, held or not


def test_root_must_be_set_when_a_host_has_several_pools() -> None:
    b = member("B")
    facts = [BEHIND[0], host("B", {"backup/data": line("a"), "fast/x": line("a")})]
    plan = run(facts, [A, b])
    assert plan.actions == ()
    assert (state(plan).reason or "").startswith("root must be set")


def test_hub_without_a_root_plans_nothing_and_says_why() -> None:
    a = member("A")
    facts = [host("A", {"tank/data": line("a"), "other/x": line("a")}), BEHIND[1]]
    plan = run(facts, [a, B])
    assert plan.actions == () and plan.states == ()
    assert plan.reason == "root must be set for the hub hostA"


def test_source_without_ssh_hostname_has_no_command() -> None:
    plan = run(BEHIND, [replace(A, ssh_hostname=None), B])
    [action] = plan.actions
    assert action.sync_command is None and action.reason == "source has no ssh_hostname"
    assert action.pipeline == (
        ("zfs", "rollback", "backup/data@b"),
        ("zfs", "receive", "-u", "backup/data"),
    )


def test_invalid_name_in_the_facts_holds_the_edge() -> None:
    plan = run(
        [
            host("A", {"tank/data": [*line("a b"), snap("c;id", 3)]}),
            host("B", {"backup/data": line("a b")}),
        ]
    )
    assert plan.actions == ()
    assert (state(plan).reason or "").startswith("cannot build commands")


# --- capabilities and encryption ------------------------------------------------------------

ALL_CAPS = {"compressed_send": True, "raw_send": True, "resumable_receive": True, "receive_o": True}


@pytest.mark.parametrize(
    ("source_caps", "target_caps", "encrypted", "send_flags", "receive_flags"),
    [
        ({}, {}, False, [], ["-u"]),
        (ALL_CAPS, {}, False, [], ["-u"]),
        (ALL_CAPS, ALL_CAPS, False, ["-c"], ["-u", "-s"]),
        (ALL_CAPS, ALL_CAPS, True, ["-w"], ["-u", "-s"]),
        (ALL_CAPS, {"raw_send": True}, True, ["-w"], ["-u"]),
        (ALL_CAPS, {"raw_send": "yes"}, True, [], ["-u"]),
    ],
)
def test_flags_only_when_both_hosts_support_them(
    source_caps: dict[str, object],
    target_caps: dict[str, object],
    encrypted: bool,
    send_flags: list[str],
    receive_flags: list[str],
) -> None:
    facts = [
        host("A", {"tank/data": line("a")}, encrypted=["tank/data"] if encrypted else []),
        host("B", {"backup/x": line("z")}),
    ]
    plan = run(facts, [replace(A, capabilities=source_caps), replace(B, capabilities=target_caps)])
    [full] = plan.actions
    assert remote(full).split()[2:-1] == send_flags
    assert list(full.pipeline[-1][2:-1]) == receive_flags


def test_received_raw_stays_raw_or_holds_the_edge() -> None:
    source = host("A", {"tank/data": line("a b")}, encrypted=["tank/data"])
    target = host(
        "B", {"backup/data": line("a")}, encrypted=["backup/data"], received_raw=["backup/data"]
    )
    caps = [replace(A, capabilities=ALL_CAPS), replace(B, capabilities=ALL_CAPS)]
    [inc] = run([source, target], caps).actions
    assert remote(inc).split()[2] == "-w"
    held = run([source, target])
    assert held.actions == () and "raw" in (state(held).reason or "")


# --- claims, cadence, lag -------------------------------------------------------------------


def prior(claim: Claim | None = None, last_sync: datetime | None = None) -> PriorState:
    return PriorState("data", "B", None, claim, last_sync, 1234, 5.0)


DELIVERED_B = Claim(SyncStatus.IN_SYNC, at(10), snapshot=SnapshotRef("b", guid_of("b")))


@pytest.mark.parametrize(
    ("now", "held"),
    [(at(11) - SECOND, True), (at(11), False), (at(11) + SECOND, False)],
    ids=["just before", "at", "just after"],
)
def test_cadence_holds_an_edge_until_the_interval_has_passed(now: datetime, held: bool) -> None:
    plan = run(BEHIND, now=now, states=[prior(DELIVERED_B)])
    st = state(plan)
    assert st.last_sync == at(10)
    assert (plan.actions == ()) is held
    assert (st.reason or "").startswith("next sync due") is held
    assert (st.last_transfer_bytes, st.last_transfer_seconds) == (1234, 5.0)


def test_cadence_uses_the_stored_last_sync_too() -> None:
    plan = run(BEHIND, now=at(11) - SECOND, states=[prior(last_sync=at(10))])
    assert plan.actions == ()


@pytest.mark.parametrize(
    ("now", "late"),
    [(at(3) + timedelta(seconds=7200), False), (at(3) + timedelta(seconds=7201), True)],
    ids=["at the limit", "just after"],
)
def test_lag_and_late_at_the_boundary(now: datetime, late: bool) -> None:
    # Oldest snapshot the target lacks: c, created at hour 3. Late after interval + grace.
    plan = run(BEHIND, now=now, grace=3600)
    st = state(plan)
    assert st.lag_seconds == (now - at(3)).total_seconds()
    assert st.late is late
    assert plan.actions[0].priority == (1 if late else 2)


def test_in_sync_has_no_lag() -> None:
    plan = run([BEHIND[0], host("B", {"backup/data": line("a b c")})])
    assert (state(plan).lag_seconds, state(plan).late) == (0, False)


def test_claimed_in_sync_contradicted_by_facts() -> None:
    claim = Claim(SyncStatus.IN_SYNC, at(20), snapshot=SnapshotRef("c", guid_of("c")))
    plan = run(BEHIND, states=[prior(claim)])
    st = state(plan)
    assert st.status == SyncStatus.OUT_OF_SYNC
    assert "reported in_sync" in (st.reason or "") and "do not show" in (st.reason or "")
    assert len(plan.actions) == 1  # and it is planned again


def test_claimed_in_sync_without_snapshot_contradicted() -> None:
    plan = run(BEHIND, states=[prior(Claim(SyncStatus.IN_SYNC, at(20)))])
    assert "lacks c" in (state(plan).reason or "")


SYNCING = Claim(
    SyncStatus.SYNCING,
    at(10),
    snapshot=SnapshotRef("c", guid_of("c")),
    target_newest_at_claim=SnapshotRef("b", guid_of("b")),
)


@pytest.mark.parametrize(
    ("claim", "now", "status"),
    [
        (SYNCING, at(12) - SECOND, SyncStatus.SYNCING),  # lease: max(2 x 3600, 3600) = 2 h
        (SYNCING, at(12), SyncStatus.OUT_OF_SYNC),
        (
            replace(SYNCING, target_newest_at_claim=SnapshotRef("a")),
            at(11),
            SyncStatus.OUT_OF_SYNC,
        ),  # the facts moved since the claim
    ],
    ids=["within the lease", "lease expired", "facts changed"],
)
def test_syncing_claim(claim: Claim, now: datetime, status: SyncStatus) -> None:
    plan = run(BEHIND, now=now, states=[prior(claim)])
    assert state(plan).status == status
    assert (plan.actions == ()) is (status == SyncStatus.SYNCING)


def test_error_is_kept_until_a_successful_sync() -> None:
    failed = Claim(
        SyncStatus.ERROR, at(10), "cannot receive: out of space", SnapshotRef("c", guid_of("c"))
    )
    plan = run(BEHIND, states=[prior(failed)])
    st = state(plan)
    assert (st.status, st.error_message) == (SyncStatus.ERROR, "cannot receive: out of space")
    assert len(plan.actions) == 1  # retried
    synced = run([BEHIND[0], host("B", {"backup/data": line("a b c")})], states=[prior(failed)])
    assert (state(synced).status, state(synced).error_message) == (SyncStatus.IN_SYNC, None)


def test_facts_beat_claims_for_conflicts() -> None:
    plan = run(DIVERGED, states=[prior(SYNCING)])
    assert state(plan).status == SyncStatus.CONFLICT


# --- identity -------------------------------------------------------------------------------


def test_guids_above_2_63_and_renamed_snapshots_match_by_guid() -> None:
    big, bigger = 2**63 + 5, 2**64 - 1
    source = [snap("a", 1, guid=big), snap("b", 2, guid=bigger), snap("c", 3, guid=2**63)]
    target = [snap("a", 1, guid=big), snap("b-renamed", 2, guid=bigger)]
    plan = run([host("A", {"tank/data": source}), host("B", {"backup/data": target})])
    [inc] = plan.actions
    assert (inc.incremental_base, inc.snapshot_name) == ("b", "c")
    assert inc.pipeline[0] == ("zfs", "rollback", "backup/data@b-renamed")
    assert plan.edges[0].base_on_target is not None
    assert plan.edges[0].base_on_target.guid == bigger


def test_snapshots_without_guid_match_by_name_and_order_by_time() -> None:
    source = [
        snap("b", 2, guid=None, txg=None),
        snap("a", 1, guid=None, txg=None),
        snap("c", 3, guid=None, txg=None),
    ]
    target = [snap("a", 1, guid=None), snap("b", 2)]
    plan = run([host("A", {"tank/data": source}), host("B", {"backup/data": target})])
    assert brief(plan) == [("B", "incremental_send", "data", "c", "b", 1)]


# --- groups sharing an edge -----------------------------------------------------------------


def test_two_groups_covering_the_same_edge_the_older_wins() -> None:
    old = group(id="g-old", name="old", created_at=T0)
    new = group(id="g-new", name="new", created_at=T0 + timedelta(days=1))
    plans = apply_overlaps([run(BEHIND, grp=new), run(BEHIND, grp=old)])
    new_plan, old_plan = plans
    assert len(old_plan.actions) == 1 and old_plan.states[0].reason is None
    assert new_plan.actions == () and new_plan.edges == ()
    assert state(new_plan).reason == "covered by group old"


def test_a_disabled_older_group_does_not_cover() -> None:
    old = group(id="g-old", name="old", created_at=T0, enabled=False)
    new = group(id="g-new", name="new", created_at=T0 + timedelta(days=1))
    new_plan, old_plan = apply_overlaps([run(BEHIND, grp=new), run(BEHIND, grp=old)])
    assert len(new_plan.actions) == 1
    assert state(old_plan).reason == "group disabled"


# --- retention guard ------------------------------------------------------------------------


def test_protected_snapshots_base_on_both_sides_and_owed_on_source() -> None:
    plan = run(BEHIND, now=at(3) + timedelta(days=30))
    found = {
        (p.system_id, p.dataset, p.snapshot, p.reason)
        for p in protected_snapshots([plan], at(3) + timedelta(days=30))
    }
    assert found == {
        ("A", "tank/data", "b", ProtectionReason.BASE),
        ("B", "backup/data", "b", ProtectionReason.BASE),
        ("A", "tank/data", "c", ProtectionReason.OWED),
    }


def test_owed_protection_lapses_after_max_protect_seconds() -> None:
    later = at(3) + timedelta(days=30) + SECOND
    protected = protected_snapshots([run(BEHIND, now=later)], later)
    assert {p.reason for p in protected} == {ProtectionReason.BASE}
    assert may_destroy(protected, "A", "tank/data", "c")
    assert not may_destroy(protected, "A", "tank/data", "b")
    only_b = protected_snapshots([run(BEHIND, now=later)], later, system_id="B")
    assert {p.system_id for p in only_b} == {"B"}
