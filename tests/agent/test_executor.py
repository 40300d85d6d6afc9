"""agent/executor.py + actions.py against the fake zfs/ssh: order, failures, reports, safety."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

from tests.agent.conftest import (
    FakeZfs,
    RecordingClient,
    action,
    instructions,
    make_config,
    snap,
)
from zfs_sync.agent.client import WitnessError
from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.cycle import Agent
from zfs_sync.agent.executor import Executor
from zfs_sync.agent.zfs import Zfs

CHANGING = ("receive", "create", "rollback", "rename", "hold", "release", "destroy", "send")


def execute(config: AgentConfig, plan: dict[str, Any], **kwargs: Any) -> tuple[Executor,
                                                                               RecordingClient]:
    client = RecordingClient(plan)
    executor = Executor(config, Zfs("zfs"), client, **kwargs)  # type: ignore[arg-type]
    executor.execute(plan)
    return executor, client


def initial_plan() -> dict[str, Any]:
    return instructions(action(1, snapshot_name="a"),
                        action(2, incremental_base="a", snapshot_name="c"))


def test_full_then_incremental_converges_and_reports(fake: FakeZfs, config: AgentConfig) -> None:
    executor, client = execute(config, initial_plan())
    assert fake.snapshots("backup/data") == ["a", "b", "c"]
    assert [(s["status"], s["action_id"]) for s in client.states] == [
        ("syncing", "act1"), ("in_sync", "act1"), ("syncing", "act2"), ("in_sync", "act2")]
    done = client.states[1]
    assert done["snapshot_id"] == "snap-a" and done["bytes_transferred"] > 65536
    assert done["duration_seconds"] >= 0 and done["system_id"] == config.system_id
    assert executor.changed_datasets() == ["backup/data"]
    # The pull ran as argv, with the agent's own ssh options, never through a shell.
    ssh = fake.calls("ssh")[0]
    assert ssh[:3] == ["-n", "-o", "BatchMode=yes"] and ssh[-2:] == ["--", "zfs send tank/data@a"]


def test_holds_follow_the_base(fake: FakeZfs, config: AgentConfig) -> None:
    execute(config, initial_plan())
    datasets = fake.state()["datasets"]
    holds = {f"{d}@{s['name']}": s["holds"] for d in ("tank/data", "backup/data")
             for s in datasets[d]["snapshots"] if s["holds"]}
    assert holds == {"backup/data@c": ["zfs-sync"],
                     "tank/data@c": [f"zfs-sync:{config.system_id}"]}


def test_holds_can_be_turned_off(fake: FakeZfs, tmp_path: Path) -> None:
    execute(make_config(tmp_path, holds=False), initial_plan())
    assert not [argv for argv in fake.calls() if argv[0] in ("hold", "release")]


def test_dry_run_prints_exact_commands_and_changes_nothing(fake: FakeZfs,
                                                           config: AgentConfig) -> None:
    before = fake.state()
    out = io.StringIO()
    executor, client = execute(config, initial_plan(), dry_run=True, out=out)
    text = out.getvalue()
    assert ("ssh -n -o BatchMode=yes -o ConnectTimeout=30 -p 22 zfs@source.example -- "
            "'zfs send tank/data@a' | zfs receive -u backup/data") in text
    assert "'zfs send -I tank/data@a tank/data@c' | zfs receive -u backup/data" in text
    assert "zfs hold zfs-sync backup/data@c" in text
    assert fake.state() == before
    assert not [a for a in fake.calls() if a[0] in CHANGING]
    assert fake.calls("ssh") == [] and client.states == []
    assert {o.status for o in executor.outcomes} == {"planned"}


def test_first_failure_stops_the_chain(fake: FakeZfs, config: AgentConfig) -> None:
    fake.update(fail={"receive": "cannot receive new filesystem stream: out of space"})
    executor, client = execute(config, initial_plan())
    assert [(o.action_id, o.status) for o in executor.outcomes] == [
        ("act1", "error"), ("act2", "skipped")]
    assert [s["status"] for s in client.states] == ["syncing", "error"]
    assert "zfs receive exited 1: cannot receive new filesystem stream: out of space" in (
        client.states[1]["error_message"])
    assert not [a for a in fake.calls() if a[0] == "send" and "-I" in a]


class ForgetfulWitness(RecordingClient):
    """A witness that no longer knows the action's snapshot (pruned while the action ran)."""

    def post_state(self, body: dict[str, Any]) -> None:
        if "snapshot_id" in body:
            raise WitnessError("snapshot not found: snap-a", status=404)
        super().post_state(body)


def test_a_claim_about_a_snapshot_the_witness_forgot_is_filed_under_its_dataset(
        fake: FakeZfs, config: AgentConfig) -> None:
    fake.update(fail={"receive": "cannot receive new filesystem stream: out of space"})
    client = ForgetfulWitness()
    Executor(config, Zfs("zfs"), client).execute(initial_plan())  # type: ignore[arg-type]
    assert [(s["status"], s["dataset"]) for s in client.states] == [
        ("syncing", "data"), ("error", "data")]
    assert "snapshot_id" not in client.states[1]
    assert "out of space" in client.states[1]["error_message"]


def test_unreachable_source_is_a_readable_error(fake: FakeZfs, config: AgentConfig) -> None:
    plan = instructions(action(1, snapshot_name="a", source_ssh_hostname="closed.example",
                               pipeline=[["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                                          "zfs@closed.example", "zfs send tank/data@a"],
                                         ["zfs", "receive", "-u", "backup/data"]]))
    _, client = execute(config, plan)
    message = client.states[-1]["error_message"]
    assert client.states[-1]["status"] == "error"
    assert "exited 255: ssh: connect to host zfs@closed.example port 1: Connection refused" in (
        message)
    assert "backup/data" not in fake.state()["datasets"]


def test_ssh_failing_after_a_complete_receive_counts_as_done(
    fake: FakeZfs, config: AgentConfig
) -> None:
    plan = instructions(action(1, snapshot_name="a", source_ssh_hostname="flaky.example",
                               pipeline=[["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                                          "zfs@flaky.example", "zfs send tank/data@a"],
                                         ["zfs", "receive", "-u", "backup/data"]]))
    _, client = execute(config, plan)
    assert fake.snapshots("backup/data") == ["a"]
    assert [s["status"] for s in client.states] == ["syncing", "in_sync"]


def test_plain_rollback_discards_changes_since_the_base(fake: FakeZfs,
                                                        config: AgentConfig) -> None:
    execute(config, instructions(action(1, snapshot_name="a")))
    state = fake.state()
    state["datasets"]["backup/data"]["modified"] = True  # a file written on the target
    fake.write(state)
    without = instructions(action(2, incremental_base="a", snapshot_name="c"))
    _, client = execute(config, without)
    assert "has been modified" in client.states[-1]["error_message"]
    _, client = execute(config, instructions(
        action(2, incremental_base="a", snapshot_name="c", rollback_to_base=True)))
    assert client.states[-1]["status"] == "in_sync"
    assert ["rollback", "backup/data@a"] in fake.calls()  # never -r
    assert fake.snapshots("backup/data") == ["a", "b", "c"]


def test_missing_parents_are_created_unmounted(fake: FakeZfs, config: AgentConfig,
                                               flavor: str) -> None:
    plan = instructions(action(1, snapshot_name="a", target_dataset="backup/hosts/one/data",
                               pipeline=[["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                                          "zfs@source.example", "zfs send tank/data@a"],
                                         ["zfs", "receive", "-u", "backup/hosts/one/data"]]))
    execute(config, plan)
    creates = [argv for argv in fake.calls() if argv[0] == "create"]
    unmounted = ["-p", "-u"] if flavor == "openzfs" else ["-p"]
    assert creates == [["create", *unmounted, "-o", "canmount=off", "backup/hosts"],
                       ["create", *unmounted, "-o", "canmount=off", "backup/hosts/one"]]
    assert fake.snapshots("backup/hosts/one/data") == ["a"]


def test_hostile_action_is_refused_reported_and_runs_nothing(fake: FakeZfs,
                                                             config: AgentConfig) -> None:
    hostile = action(1, snapshot_name="c")
    hostile["pipeline"][0][-1] = "zfs send tank/data@c; rm -rf /"
    hostile["pipeline"][1] = ["sh", "-c", "zfs receive -F backup/data"]
    _, client = execute(config, instructions(hostile))
    assert client.states == [{
        "system_id": config.system_id, "status": "error", "sync_group_id": "group-1",
        "snapshot_id": "snap-c", "action_id": "act1",
        "error_message": client.states[0]["error_message"],
    }]
    assert client.states[0]["error_message"].startswith("refused by the agent:")
    assert fake.calls("ssh") == [] and not [a for a in fake.calls() if a[0] in CHANGING]


def test_a_refusal_stops_only_its_own_chain(fake: FakeZfs, config: AgentConfig) -> None:
    fake.update(datasets={**fake.state()["datasets"],
                          "tank/other": {"snapshots": [snap("x", 99, 40)]}})
    bad = action(1, snapshot_name="c", target_dataset="backup/evil;id")
    good = action(1, snapshot_name="x", source_dataset="tank/other", dataset="other",
                  target_dataset="backup/other", action_id="good1",
                  pipeline=[["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                             "zfs@source.example", "zfs send tank/other@x"],
                            ["zfs", "receive", "-u", "backup/other"]])
    executor, _ = execute(config, instructions(bad, good))
    assert sorted((o.action_id, o.status) for o in executor.outcomes) == [
        ("act1", "error"), ("good1", "in_sync")]


def test_child_waits_for_parent_and_is_skipped_when_it_fails(fake: FakeZfs,
                                                             tmp_path: Path) -> None:
    config = make_config(tmp_path, max_parallel=4)
    fake.update(fail={"receive": "cannot receive: injected failure"})
    parent = action(1, snapshot_name="a")
    child = action(1, snapshot_name="a", action_id="child1", dataset="data/vm",
                   source_dataset="tank/data/vm", target_dataset="backup/data/vm",
                   pipeline=[["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                              "zfs@source.example", "zfs send tank/data/vm@a"],
                             ["zfs", "receive", "-u", "backup/data/vm"]])
    executor, _ = execute(config, instructions(child, parent))  # child listed first
    outcomes = {o.action_id: o for o in executor.outcomes}
    assert outcomes["act1"].status == "error"
    assert outcomes["child1"].status == "error"
    assert "parent dataset backup/data failed" in outcomes["child1"].message
    # The child never ran, and its parent was not created by us (it must arrive by receive).
    assert [a for a in fake.calls() if a[0] == "receive"] == [["receive", "-u", "backup/data"]]
    assert not [a for a in fake.calls() if a[0] == "create"]


def test_stop_request_runs_nothing_more(fake: FakeZfs, config: AgentConfig) -> None:
    stop = threading.Event()
    stop.set()
    _, client = execute(config, initial_plan(), stop=stop)
    assert client.states == [] and not [a for a in fake.calls() if a[0] in CHANGING]


def test_action_without_source_ssh_is_skipped(fake: FakeZfs, config: AgentConfig) -> None:
    plan = instructions(action(1, snapshot_name="a", source_ssh_hostname=None,
                               reason="source has no ssh_hostname",
                               pipeline=[["zfs", "receive", "-u", "backup/data"]]))
    executor, client = execute(config, plan)
    assert [(o.status, o.message) for o in executor.outcomes] == [
        ("skipped", "source has no ssh_hostname")]
    assert client.states == []


def test_destructive_rollback_action_then_incremental(fake: FakeZfs, config: AgentConfig) -> None:
    execute(config, instructions(action(1, snapshot_name="a")))
    state = fake.state()
    state["datasets"]["backup/data"]["snapshots"].append(snap("own", 77, 90))
    fake.write(state)
    plan = instructions(
        action(1, action_type="rollback", snapshot_name="a", snapshot_id=None,
               pipeline=[["zfs", "rollback", "-r", "backup/data@a"]]),
        action(2, incremental_base="a", snapshot_name="c"))
    _, client = execute(config, plan)
    assert fake.snapshots("backup/data") == ["a", "b", "c"]
    assert client.states[0] == {"sync_group_id": "group-1", "system_id": config.system_id,
                                "status": "syncing", "action_id": "act1", "dataset": "data"}


def test_resume_token_that_cannot_resume_is_aborted(fake: FakeZfs, config: AgentConfig) -> None:
    fake.update(flavor="openzfs")  # zfs-fuse has no resumable receive: nothing to resume
    execute(config, instructions(action(1, snapshot_name="a")))
    state = fake.state()
    state["datasets"]["backup/data"]["token"] = "1-abc123-e0-789c"
    fake.write(state)
    _, client = execute(config, instructions(
        action(2, incremental_base="a", snapshot_name="c")))
    calls = fake.calls()
    assert ["send", "-n", "-v", "-t", "1-abc123-e0-789c"] in calls
    assert ["receive", "-A", "backup/data"] in calls
    assert client.states[-1]["status"] == "in_sync"


def test_sync_rereports_the_changed_datasets(fake: FakeZfs, config: AgentConfig) -> None:
    client = RecordingClient(initial_plan())
    agent = Agent(config, Zfs("zfs"), client, threading.Event())  # type: ignore[arg-type]
    summary = agent.sync()
    assert summary.line() == "2 in_sync" and not summary.failed
    (report,) = client.reports
    assert report["scope"] == ["backup/data"]
    assert [s["name"] for s in report["snapshots"]] == ["a", "b", "c"]
    assert all(isinstance(s["guid"], str) for s in report["snapshots"])


def test_interrupted_receive_is_resumed_with_its_token(fake: FakeZfs,
                                                       config: AgentConfig) -> None:
    fake.update(flavor="openzfs")
    execute(config, instructions(action(1, snapshot_name="a")))
    token = "1-" + json.dumps({"snap": "tank/data@c", "base": "tank/data@a"}).encode().hex()
    state = fake.state()
    state["datasets"]["backup/data"]["token"] = token
    fake.write(state)
    fake.clear_log()
    _, client = execute(config, instructions(action(2, incremental_base="a", snapshot_name="c")))
    calls = fake.calls()
    assert ["send", "-t", token] in calls and ["receive", "-s", "-u", "backup/data"] in calls
    assert ["receive", "-u", "backup/data"] not in calls  # the resumed stream delivered c
    assert fake.snapshots("backup/data") == ["a", "c"]
    assert [s["status"] for s in client.states] == ["syncing", "in_sync"]
    assert ["hold", "zfs-sync", "backup/data@c"] in calls
