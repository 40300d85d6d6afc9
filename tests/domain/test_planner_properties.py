"""Property tests: random fleets, planned, then *executed* in a simulated ZFS.

The simulator runs what the target would run: it parses each ``sync_command`` back with
``shlex.split`` (checking it equals the pipeline), runs the ssh stage's remote command on the
source and pipes the stream into ``zfs receive``, with OpenZFS's strictness (an incremental
needs the target's newest snapshot to be the stream's base; a full receive needs a new
dataset; ``rollback`` without ``-r`` refuses when newer snapshots exist).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zfs_sync.domain.plan_types import (
    Action,
    ActionType,
    DatasetFacts,
    Group,
    GroupPlan,
    Member,
    Resolution,
    ResolutionStrategy,
    SnapshotFact,
    SyncStatus,
    SystemFacts,
    build_system_facts,
)
from zfs_sync.domain.planner import plan_group

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=30)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Legal ZFS characters in every position that allows them: ':', '.', '-', '_' and space.
DATASETS = ["data", "data/vm 1", "data/vm 1/disk:0", "home.d", "my-ds_x"]
SNAP_PREFIXES = ["auto ", "snap:", "zfs-sync_", "d.", "a-"]


# --- the simulated fleet --------------------------------------------------------------------


class ZfsError(Exception):
    pass


@dataclass
class Stream:
    base_guid: int | None
    snapshots: list[SnapshotFact]


@dataclass
class SimHost:
    system_id: str
    datasets: dict[str, list[SnapshotFact]]  # oldest first
    txg: int = 10_000
    destroyed: list[tuple[str, SnapshotFact]] = field(default_factory=list)

    def facts(self) -> SystemFacts:
        rows = [(d, s) for d, snaps in self.datasets.items() for s in snaps]
        return build_system_facts(self.system_id, rows, [DatasetFacts(d) for d in self.datasets])

    def exists(self, dataset: str) -> bool:
        return "/" not in dataset or dataset in self.datasets  # pool roots always exist

    def lookup(self, full: str) -> tuple[list[SnapshotFact], int]:
        dataset, _, name = full.partition("@")
        if dataset not in self.datasets:
            raise ZfsError(f"dataset does not exist: {dataset}")
        snaps = self.datasets[dataset]
        for i, s in enumerate(snaps):
            if s.name == name:
                return snaps, i
        raise ZfsError(f"snapshot does not exist: {full}")


def zfs_send(host: SimHost, argv: Sequence[str]) -> Stream:
    assert argv[1] == "send"
    args = [a for a in argv[2:] if a not in ("-w", "-c")]
    snaps, i = host.lookup(args[-1])
    if len(args) == 1:
        return Stream(None, [snaps[i]])
    mode, base = args[0], args[1]
    assert mode in ("-i", "-I") and len(args) == 3
    base_snaps, b = host.lookup(base)
    if base_snaps is not snaps or b >= i:
        raise ZfsError("incremental base must be an earlier snapshot of the same dataset")
    chosen = snaps[b + 1 : i + 1] if mode == "-I" else [snaps[i]]
    return Stream(snaps[b].guid, list(chosen))


def zfs_receive(host: SimHost, argv: Sequence[str], stream: Stream) -> None:
    assert argv[1] == "receive" and "-F" not in argv
    assert set(argv[2:-1]) <= {"-u", "-s"}
    dataset = argv[-1]
    if stream.base_guid is None:
        if dataset in host.datasets:
            raise ZfsError("destination exists")
        if not host.exists(dataset.rpartition("/")[0]):
            raise ZfsError("parent does not exist")
        host.datasets[dataset] = []
    elif dataset not in host.datasets:
        raise ZfsError("destination does not exist")
    else:
        current = host.datasets[dataset]
        if not current or current[-1].guid != stream.base_guid:
            raise ZfsError("most recent snapshot does not match incremental source")
    present = {s.name for s in host.datasets[dataset]}
    for snap in stream.snapshots:
        if snap.name in present:
            raise ZfsError("snapshot already exists")
        host.txg += 1
        copy = SnapshotFact(
            snap.name,
            snap.timestamp,
            f"{host.system_id}:{dataset}@{snap.name}",
            snap.guid,
            host.txg,
            snap.size,
        )
        host.datasets[dataset].append(copy)


def zfs_rollback(host: SimHost, argv: Sequence[str]) -> None:
    destroy = "-r" in argv
    assert argv[1] == "rollback" and set(argv[2:-1]) <= {"-r"}
    snaps, i = host.lookup(argv[-1])
    later = snaps[i + 1 :]
    if later and not destroy:
        raise ZfsError("more recent snapshots exist")
    dataset = argv[-1].partition("@")[0]
    host.destroyed += [(dataset, s) for s in later]
    del snaps[i + 1 :]


def zfs_rename(host: SimHost, argv: Sequence[str]) -> None:
    old, new = argv[2], argv[3]
    if old not in host.datasets or new in host.datasets:
        raise ZfsError("cannot rename")
    for name in [d for d in host.datasets if d == old or d.startswith(old + "/")]:
        host.datasets[new + name[len(old) :]] = host.datasets.pop(name)


def split_command(command: str) -> list[list[str]]:
    """The shell line back into argv stages (names never contain '&&' or '|' tokens)."""
    stages: list[list[str]] = [[]]
    for token in shlex.split(command):
        if token in ("&&", "|"):
            stages.append([])
        else:
            stages[-1].append(token)
    return stages


@dataclass
class Fleet:
    hosts: dict[str, SimHost]
    members: dict[str, Member]

    def facts(self) -> dict[str, SystemFacts]:
        return {sid: h.facts() for sid, h in self.hosts.items()}

    def by_ssh(self, destination: str) -> SimHost:
        for m in self.members.values():
            if destination in (m.ssh_hostname, f"{m.ssh_user}@{m.ssh_hostname}"):
                return self.hosts[m.system_id]
        raise AssertionError(f"unknown ssh destination {destination}")

    def run_action(self, action: Action) -> None:
        """What the agent does: create missing parents for a full send, then the stages."""
        assert action.sync_command is not None
        stages = split_command(action.sync_command)
        assert stages == [list(s) for s in action.pipeline]
        target = self.hosts[action.target_system_id]
        if action.action_type == ActionType.FULL_SEND:
            self._create_parents(target, action.target_dataset)
        stream: Stream | None = None
        for stage in stages:
            if stage[0] == "ssh":
                source = self.by_ssh(stage[-2])
                stream = zfs_send(source, shlex.split(stage[-1]))
            elif stage[1] == "receive":
                assert stream is not None
                zfs_receive(target, stage, stream)
            elif stage[1] == "rollback":
                zfs_rollback(target, stage)
            elif stage[1] == "rename":
                zfs_rename(target, stage)
            else:
                raise AssertionError(f"unexpected stage {stage}")

    @staticmethod
    def _create_parents(host: SimHost, dataset: str) -> None:
        parts = dataset.split("/")
        for i in range(2, len(parts)):
            host.datasets.setdefault("/".join(parts[:i]), [])

    def execute(self, plan: GroupPlan) -> list[str]:
        """Run every action in order; a failure stops that dataset's chain."""
        failures: list[str] = []
        stopped: set[tuple[str, str]] = set()
        for action in plan.actions:
            key = (action.target_system_id, action.dataset)
            if key in stopped:
                continue
            try:
                self.run_action(action)
            except ZfsError as err:
                stopped.add(key)
                failures.append(f"{action.action_type} {action.target_dataset}: {err}")
        return failures


# --- random fleets --------------------------------------------------------------------------


@dataclass
class Scenario:
    fleet: Fleet
    group: Group


def _member(sid: str, root: str, zfs_path: str = "zfs") -> Member:
    return Member(
        sid,
        f"host-{sid}",
        root,
        True,
        f"{sid.lower()}.example",
        "zfs",
        22,
        zfs_path,
        {"compressed_send": True, "resumable_receive": True},
    )


def _ancestors(dataset: str) -> list[str]:
    parts = dataset.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _with_parents(root: str, held: dict[str, list[SnapshotFact]]) -> dict[str, list[SnapshotFact]]:
    """ZFS has no child without its parent: add the missing ones, empty."""
    full = {f"{root}/{d}": snaps for d, snaps in held.items()}
    for logical in held:
        for parent in _ancestors(logical):
            full.setdefault(f"{root}/{parent}", [])
    return full


@st.composite
def histories(draw: st.DrawFn, pattern: bool) -> dict[str, list[SnapshotFact]]:
    """Per logical dataset, the source's full history (the only place snapshots are made)."""
    chosen = draw(st.lists(st.sampled_from(DATASETS), min_size=1, max_size=3, unique=True))
    guids = iter(draw(st.lists(st.integers(1, 2**64 - 1), min_size=40, max_size=40, unique=True)))
    result = {}
    for d in chosen:
        length = draw(st.integers(1, 6))
        prefix = draw(st.sampled_from(SNAP_PREFIXES))
        names = [
            f"{'keep' if not pattern or draw(st.booleans()) else 'skip'}-{prefix}{i}"
            for i in range(length)
        ]
        if pattern:
            names[0] = f"keep-{prefix}0"  # at least one eligible
        result[d] = [
            SnapshotFact(n, T0 + timedelta(hours=i + 1), f"A:{d}@{n}", next(guids), 100 + i, 1000)
            for i, n in enumerate(names)
        ]
    return result


def _copies(snaps: Iterable[SnapshotFact], start_txg: int) -> list[SnapshotFact]:
    return [
        SnapshotFact(s.name, s.timestamp, f"copy-{s.guid}", s.guid, start_txg + i, s.size)
        for i, s in enumerate(snaps)
    ]


@st.composite
def target_holding(
    draw: st.DrawFn, history: list[SnapshotFact], source: list[SnapshotFact], conflicts: bool
) -> list[SnapshotFact] | None:
    """What one target holds of one dataset: None (lacks it), or some snapshots."""
    kinds = ["lacks", "behind"] + (["diverged", "unrelated", "empty"] if conflicts else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "lacks":
        return None
    if kind == "empty":
        return []
    if kind == "unrelated":
        return [
            SnapshotFact(
                f"own-{i}", T0 + timedelta(minutes=30 + i), f"own{i}", 7_000_000 + i, 50 + i
            )
            for i in range(draw(st.integers(1, 3)))
        ]
    # Its newest is a snapshot the source still has, older ones may be pruned on either side.
    newest = draw(st.sampled_from(source))
    k = history.index(newest)
    kept = [s for s in history[:k] if draw(st.booleans())] + [newest]
    held = _copies(kept, 100)
    if kind == "diverged":
        own = [
            SnapshotFact(
                f"own-{i}",
                newest.timestamp + timedelta(minutes=10 + i),
                f"o{i}",
                8_000_000 + i,
                900 + i,
            )
            for i in range(draw(st.integers(1, 2)))
        ]
        held += own
    return held


@st.composite
def directional_fleets(draw: st.DrawFn, conflicts: bool = False, pattern: bool = False) -> Scenario:
    hist = draw(histories(pattern))
    source_held = {}
    for d, snaps in hist.items():
        keep = [s for s in snaps[:-1] if draw(st.booleans())] + [snaps[-1]]  # source pruning
        source_held[d] = keep
    hosts = {"A": SimHost("A", _with_parents("tank", source_held))}
    members = {"A": _member("A", "tank")}
    for sid in ["B", "C", "D"][: draw(st.integers(1, 3))]:
        root = draw(st.sampled_from(["backup", "back up/host A", "vault:1/x.y"]))
        held: dict[str, list[SnapshotFact]] = {}
        for d in sorted(hist, key=lambda x: tuple(x.split("/"))):
            if any(p in hist and p not in held for p in _ancestors(d)):
                continue  # its parent is missing on this target, so it is too
            holding = draw(target_holding(hist[d], source_held[d], conflicts))
            if holding is not None:
                held[d] = holding
        hosts[sid] = SimHost(sid, _with_parents(root, held) | {root.split("/")[0] + "/z": []})
        members[sid] = _member(sid, root, draw(st.sampled_from(["zfs", "/usr/sbin/zfs"])))
    grp = Group(
        "g1",
        "group",
        T0,
        directional=True,
        hub_system_id="A",
        snapshot_pattern="keep-*" if pattern else "",
        allow_rollback=conflicts and draw(st.booleans()),
    )
    return Scenario(Fleet(hosts, members), grp)


@st.composite
def bidirectional_fleets(draw: st.DrawFn) -> Scenario:
    """Everyone holds a prefix of one shared history; the longest prefix is the source."""
    hist = draw(histories(False))
    hosts, members = {}, {}
    for sid, root in zip(
        ["A", "B", "C"][: draw(st.integers(2, 3))], ["tank", "pool2", "back up/x"], strict=False
    ):
        held: dict[str, list[SnapshotFact]] = {}
        for d in sorted(hist, key=lambda x: tuple(x.split("/"))):
            if any(p in hist and p not in held for p in _ancestors(d)):
                continue
            k = draw(st.integers(0, len(hist[d])))
            if k:
                held[d] = _copies(hist[d][:k], 10)
        hosts[sid] = SimHost(sid, _with_parents(root, held))
        members[sid] = _member(sid, root)
    return Scenario(Fleet(hosts, members), Group("g1", "group", T0))


def plan(scenario: Scenario, resolutions: Sequence[Resolution] = ()) -> GroupPlan:
    fleet = scenario.fleet
    return plan_group(
        scenario.group, list(fleet.members.values()), fleet.facts(), [], resolutions, NOW
    )


# --- properties -----------------------------------------------------------------------------


def _converges(scenario: Scenario) -> None:
    failures: list[str] = []
    for _ in range(2):
        failures += scenario.fleet.execute(plan(scenario))
    final = plan(scenario)
    assert failures == []
    assert final.actions == ()
    assert final.conflicts == ()
    assert all(s.status == SyncStatus.IN_SYNC for s in final.states), final.states


@SETTINGS
@given(directional_fleets())
def test_directional_fleets_converge_in_two_rounds(scenario: Scenario) -> None:
    _converges(scenario)
    source = scenario.fleet.hosts["A"]
    for sid, target in scenario.fleet.hosts.items():
        root = scenario.fleet.members[sid].root
        for dataset, snaps in source.datasets.items():
            if snaps:  # every target now holds the source's newest snapshot
                copy = target.datasets[f"{root}{dataset.removeprefix('tank')}"]
                assert copy[-1].guid == snaps[-1].guid


@SETTINGS
@given(directional_fleets(pattern=True))
def test_pattern_fleets_converge_with_single_steps(scenario: Scenario) -> None:
    first = plan(scenario)
    assert not any(a.include_intermediate for a in first.actions)
    _converges(scenario)


@SETTINGS
@given(bidirectional_fleets())
def test_bidirectional_fleets_converge_in_two_rounds(scenario: Scenario) -> None:
    _converges(scenario)
    newest = {
        s.guid
        for h in scenario.fleet.hosts.values()
        for snaps in h.datasets.values()
        for s in snaps[-1:]
    }
    roots = {sid: m.root for sid, m in scenario.fleet.members.items()}
    per_dataset = {
        d.removeprefix(roots[sid] or "")
        for sid, h in scenario.fleet.hosts.items()
        for d, s in h.datasets.items()
        if s
    }
    assert len(newest) == len(per_dataset)  # one newest snapshot per dataset, everywhere


def _snapshots(fleet: Fleet) -> dict[str, set[int | None]]:
    return {
        sid: {s.guid for snaps in h.datasets.values() for s in snaps}
        for sid, h in fleet.hosts.items()
    }


@SETTINGS
@given(directional_fleets(conflicts=True))
def test_nothing_is_destroyed_without_an_allowance(scenario: Scenario) -> None:
    first = plan(scenario)
    allowed = {
        (c.target_system_id, r.guid)
        for c in first.conflicts
        if c.planned and scenario.group.allow_rollback
        for r in c.details.would_discard
    }
    before = _snapshots(scenario.fleet)
    scenario.fleet.execute(first)
    after = _snapshots(scenario.fleet)
    lost = {(sid, g) for sid, guids in before.items() for g in guids - after[sid]}
    assert lost <= allowed
    if not scenario.group.allow_rollback:
        assert lost == set()
        assert all(
            a.action_type not in (ActionType.ROLLBACK, ActionType.RENAME) for a in first.actions
        )
    for action in first.actions:
        argv = [t for stage in action.pipeline for t in stage]
        assert "-F" not in argv and "destroy" not in argv and "-R" not in argv
        assert ("-r" in argv) == (action.action_type == ActionType.ROLLBACK)


@SETTINGS
@given(directional_fleets(conflicts=True), st.booleans())
def test_resolutions_destroy_only_what_was_listed(scenario: Scenario, grow: bool) -> None:
    scenario.group = Group("g1", "group", T0, directional=True, hub_system_id="A")
    first = plan(scenario)
    resolutions = [
        Resolution(
            c.dataset,
            c.target_system_id,
            c.conflict_type,
            ResolutionStrategy.ROLLBACK_TARGET
            if c.conflict_type == "target_diverged"
            else ResolutionStrategy.RENAME_TARGET_ASIDE,
            c.details.would_discard,
        )
        for c in first.conflicts
    ]
    allowed = {(r.target_system_id, s.guid) for r in resolutions for s in r.allowed_discard}
    if grow:  # a target takes a new snapshot after the admin decided: that one is never lost
        for host in list(scenario.fleet.hosts.values())[1:]:
            for snaps in host.datasets.values():
                if snaps:
                    snaps.append(SnapshotFact("late", NOW, "late", 9_999_999, 99_999))
    before = _snapshots(scenario.fleet)
    second = plan(scenario, resolutions)
    scenario.fleet.execute(second)
    after = _snapshots(scenario.fleet)
    lost = {(sid, g) for sid, guids in before.items() for g in guids - after[sid]}
    assert lost <= allowed
    assert all((sid, 9_999_999) not in lost for sid in before)


# --- commands -------------------------------------------------------------------------------

COMPONENT = st.text("ab:. -_9", min_size=1, max_size=6).filter(
    lambda c: not c.startswith("-") and c not in (".", "..")
)


@SETTINGS
@given(directional_fleets(conflicts=True), st.lists(COMPONENT, min_size=1, max_size=3), COMPONENT)
def test_sync_command_is_the_pipeline_and_the_remote_send(
    scenario: Scenario, logical: list[str], snap_prefix: str
) -> None:
    # Rename one source dataset and its snapshots to random legal names first.
    source = scenario.fleet.hosts["A"]
    name = "tank/" + "/".join(logical)
    source.datasets[name] = [
        SnapshotFact(f"{snap_prefix}{i}", T0 + timedelta(hours=i), "x", 5_000_000 + i, i + 1)
        for i in range(3)
    ]
    for parent in _ancestors("/".join(logical)):
        source.datasets.setdefault(f"tank/{parent}", [])
    for action in plan(scenario).actions:
        _check_command(action, scenario.fleet.members)


OUR_FLAGS = {"-n", "-o", "-p", "-u", "-s", "-r", "-i", "-I", "-w", "-c"}


def _check_command(action: Action, members: dict[str, Member]) -> None:
    if action.sync_command is None:
        return
    for argv in [*action.pipeline, *(shlex.split(s[-1]) for s in action.pipeline if s[0] == "ssh")]:
        # Only our own flags start with '-': nothing taken from data can be read as an option.
        assert {a for a in argv if a.startswith("-")} <= OUR_FLAGS, argv
    tokens = shlex.split(action.sync_command)
    expected: list[str] = []
    for i, stage in enumerate(action.pipeline):
        if i:
            expected.append("|" if action.pipeline[i - 1][0] == "ssh" else "&&")
        expected += stage
    assert tokens == expected
    sends = [s for s in action.pipeline if s[0] == "ssh"]
    if action.action_type in (ActionType.ROLLBACK, ActionType.RENAME):
        assert sends == [] and len(action.pipeline) == 1
        return
    [ssh] = sends
    send = shlex.split(ssh[-1])
    source = members[action.source_system_id]
    assert send[:2] == [source.zfs_path, "send"]
    assert send[-1] == f"{action.source_dataset}@{action.snapshot_name}"
    if action.is_incremental:
        flag = "-I" if action.include_intermediate else "-i"
        assert send[-3:-1] == [flag, f"{action.source_dataset}@{action.incremental_base}"]
    assert action.pipeline[-1] == (
        members[action.target_system_id].zfs_path,
        "receive",
        "-u",
        "-s",
        action.target_dataset,
    )


JUNK = st.text("ab-;$`'\"|&\n /@:.", min_size=1, max_size=8)


@SETTINGS
@given(
    directional_fleets(conflicts=True),
    st.lists(JUNK, min_size=1, max_size=3),
    JUNK,
    st.one_of(st.none(), JUNK),
    st.integers(-5, 70_000),
    st.sampled_from(["zfs", "-zfs", "zfs;id", "/sbin/zfs"]),
)
def test_junk_never_crashes_the_planner_nor_reaches_a_command(
    scenario: Scenario,
    components: list[str],
    snap_name: str,
    ssh_host: str | None,
    port: int,
    zfs_path: str,
) -> None:
    fleet = scenario.fleet
    fleet.hosts["A"].datasets["tank/" + "/".join(components)] = [
        SnapshotFact(snap_name, T0, "j", 4_000_000, 1)
    ]
    fleet.members["A"] = Member("A", "host-A", "tank", True, ssh_host, "zfs", port, zfs_path, {})
    for action in plan(scenario).actions:  # must not raise
        argvs: list[Sequence[str]] = [*action.pipeline]
        argvs += [shlex.split(s[-1]) for s in action.pipeline if s[0] == "ssh"]
        for argv in argvs:
            for arg in argv[:-1] if argv[0] == "ssh" else argv:
                assert not set(arg) & set(";$`'\"|&\n"), argv
            assert {a for a in argv if a.startswith("-")} <= OUR_FLAGS, argv
