"""The agent on real ZFS (zfs-fuse) and real SSH, driven by instructions that the witness's
own command builder (``domain/commands.py``) makes; the state reports go to a recorder.

These need no witness process, so they pin the agent's half of the contract on its own; the
whole loop with a real witness is ``test_witness_flow.py``.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import RecordingClient
from tests.e2e.conftest import Fleet, Host, populate, zfs
from zfs_sync.agent.config import load_config
from zfs_sync.agent.cycle import Agent
from zfs_sync.agent.executor import Executor
from zfs_sync.agent.inventory import read_datasets, report_body
from zfs_sync.agent.zfs import Zfs
from zfs_sync.domain import commands


def pull(source: Host, target: Host, ssh_port: int, logical: str, snapshot: str,
         base: str | None = None, sequence: int = 1, rollback_to_base: bool = False,
         **extra: Any) -> dict[str, Any]:
    """An action exactly as the witness builds it (pull from ``source`` as root over ssh)."""
    built = commands.transfer_commands(
        commands.Host("zfs", "127.0.0.1", "root", ssh_port), commands.Host("zfs"),
        commands.Transfer(source.dataset(logical), target.dataset(logical), snapshot, base,
                          base is not None, base if rollback_to_base else None),
    )
    action = {
        "action_id": f"a{sequence}-{snapshot}", "action_type":
            "incremental_send" if base else "full_send",
        "sync_group_id": "group-1", "dataset": logical, "source_system_id": source.system_id,
        "target_system_id": target.system_id, "source_pool": source.pool,
        "source_dataset": source.dataset(logical), "target_pool": target.pool,
        "target_dataset": target.dataset(logical), "snapshot_name": snapshot,
        "snapshot_id": f"id-{snapshot}", "incremental_base": base, "is_incremental": bool(base),
        "include_intermediate": base is not None, "rollback_to_base": rollback_to_base,
        "estimated_size": None, "priority": 2, "sequence": sequence,
        "source_ssh_hostname": "127.0.0.1", "source_ssh_user": "root",
        "source_ssh_port": ssh_port, "pipeline": [list(s) for s in built.pipeline],
        "sync_command": built.sync_command, "reason": built.reason,
    }
    action.update(extra)
    return action


def run_agent(target: Host, *actions: dict[str, Any], dry_run: bool = False,
              out: io.StringIO | None = None) -> tuple[Agent, RecordingClient, Any]:
    plan = {"system_id": target.system_id, "actions": list(actions),
            "action_count": len(actions)}
    client = RecordingClient(plan)
    agent = Agent(load_config(str(target.config_path)), Zfs("zfs"), client,  # type: ignore[arg-type]
                  threading.Event())
    summary = agent.sync(dry_run=dry_run, out=out)
    return agent, client, summary


@pytest.fixture
def pair(hosts: Fleet) -> tuple[Host, Host]:
    return hosts.host("alpha", "src"), hosts.host("beta", "dst")


def test_zfs_fuse_is_detected_and_read_with_get(pair: tuple[Host, Host]) -> None:
    source, _ = pair
    populate(source, "data", 3)
    zfs_ = Zfs("zfs")
    caps = zfs_.capabilities()
    assert not caps.list_parsable and not caps.resumable_receive and not caps.raw_send
    assert caps.holds and not caps.bookmarks and zfs_.version() is None
    config = load_config(str(source.config_path))
    snapshots, datasets = report_body(read_datasets(config, zfs_))
    assert [d["name"] for d in datasets] == [source.pool, f"{source.pool}/data"]
    assert [s["name"] for s in snapshots] == ["snap1", "snap2", "snap3"]
    assert all(s["guid"].isdigit() and int(s["guid"]) > 0 for s in snapshots)
    assert all(isinstance(s["timestamp"], int) and s["createtxg"] > 0 for s in snapshots)


def test_full_then_incremental_over_ssh(pair: tuple[Host, Host], hosts: Fleet) -> None:
    source, target = pair
    populate(source, "data", 5)
    port = hosts.ssh.port
    _, client, summary = run_agent(target, pull(source, target, port, "data", "snap1"),
                                   pull(source, target, port, "data", "snap5", "snap1", 2))
    assert not summary.failed, client.states
    assert target.snapshots("data") == [f"snap{i}" for i in range(1, 6)]
    assert target.guids("data") == source.guids("data")
    assert target.files("data") == source.files("data")
    assert [s["status"] for s in client.states] == ["syncing", "in_sync"] * 2
    assert client.states[-1]["bytes_transferred"] > 0
    assert client.reports[-1]["scope"] == [target.dataset("data")]
    # The base is held on both sides, so pruning it fails loudly instead of forcing a full
    # resend; the previous base was released.
    userrefs = zfs("get", "-H", "-p", "-o", "value", "userrefs",
                   f"{source.dataset('data')}@snap5").stdout.strip()
    assert userrefs == "1"
    assert zfs("get", "-H", "-p", "-o", "value", "userrefs",
               f"{target.dataset('data')}@snap1").stdout.strip() == "0"
    busy = zfs("destroy", f"{source.dataset('data')}@snap5", check=False)
    assert busy.returncode != 0 and "dataset is busy" in busy.stderr


def test_nested_datasets_and_missing_parents(pair: tuple[Host, Host], hosts: Fleet) -> None:
    source, target = pair
    for logical in ("data", "data/vm", "data/vm/disk0"):
        populate(source, logical, 2)
    port = hosts.ssh.port
    # Only the grandchild is replicated: its parents do not exist on the target yet.
    _, client, summary = run_agent(target, pull(source, target, port, "data/vm/disk0", "snap2"))
    assert not summary.failed, client.states
    for parent in ("data", "data/vm"):
        props = zfs("get", "-H", "-o", "value", "canmount,mounted", target.dataset(parent))
        assert props.stdout.split() == ["off", "no"]
        assert target.snapshots(parent) == []
    assert target.files("data/vm/disk0") == source.files("data/vm/disk0")


def test_parents_first_with_parallel_transfers(pair: tuple[Host, Host], hosts: Fleet,
                                               tmp_path: Path) -> None:
    source, target = pair
    for logical in ("data", "data/a", "data/b", "other"):
        populate(source, logical, 2)
    port = hosts.ssh.port
    config = target.config_path.read_text() + "max_parallel: 3\n"
    target.config_path.write_text(config)
    actions = [pull(source, target, port, logical, "snap2", action_id=f"x-{i}")
               for i, logical in enumerate(("data/b", "other", "data/a", "data"))]
    _, client, summary = run_agent(target, *actions)
    assert not summary.failed, client.states
    for logical in ("data", "data/a", "data/b", "other"):  # a full send of snap2 alone
        assert target.guids(logical) == {"snap2": source.guids(logical)["snap2"]}


def test_modified_target_gets_the_safe_rollback(pair: tuple[Host, Host], hosts: Fleet) -> None:
    source, target = pair
    populate(source, "data", 2)
    port = hosts.ssh.port
    run_agent(target, pull(source, target, port, "data", "snap2"))
    target_files = target.files("data")
    zfs("mount", target.dataset("data"))
    target.write("data", "written-on-target.txt", "local change\n")
    zfs("unmount", target.dataset("data"))
    source.write("data", "new.txt", "new\n")
    source.snapshot("data", "snap3")
    _, client, _ = run_agent(target, pull(source, target, port, "data", "snap3", "snap2"))
    assert "has been modified" in client.states[-1]["error_message"]
    _, client, summary = run_agent(
        target, pull(source, target, port, "data", "snap3", "snap2", rollback_to_base=True))
    assert not summary.failed, client.states
    files = target.files("data")
    assert "written-on-target.txt" not in files and files == source.files("data")
    assert set(target_files) < set(files)


def test_unreachable_source_is_an_error_with_sshs_words(pair: tuple[Host, Host],
                                                        hosts: Fleet) -> None:
    from tests.e2e.harness import free_port

    source, target = pair
    populate(source, "data", 1)
    closed = free_port()
    _, client, summary = run_agent(target, pull(source, target, closed, "data", "snap1"))
    assert summary.failed
    message = client.states[-1]["error_message"]
    assert client.states[-1]["status"] == "error"
    assert f"port {closed}: Connection refused" in message, message
    assert target.snapshots("data") == []


def test_dry_run_prints_what_a_real_run_runs(pair: tuple[Host, Host], hosts: Fleet,
                                             caplog: pytest.LogCaptureFixture) -> None:
    source, target = pair
    populate(source, "data", 3)
    port = hosts.ssh.port
    plan = (pull(source, target, port, "data", "snap1"),
            pull(source, target, port, "data", "snap3", "snap1", 2))
    out = io.StringIO()
    _, client, _ = run_agent(target, *plan, dry_run=True, out=out)
    assert client.states == [] and target.snapshots("data") == []
    pipelines = [line for line in out.getvalue().splitlines() if " | " in line]
    assert len(pipelines) == 2
    with caplog.at_level(logging.INFO, logger="zfs_sync.agent.actions"):
        run_agent(target, *plan)
    ran = [r.getMessage().split(": ", 1)[1] for r in caplog.records
           if r.getMessage().startswith("pulling")]
    assert ran == pipelines


def test_hostile_instruction_is_refused_on_a_real_host(pair: tuple[Host, Host], hosts: Fleet,
                                                       tmp_path: Path) -> None:
    source, target = pair
    populate(source, "data", 1)
    marker = tmp_path / "pwned"
    action = pull(source, target, hosts.ssh.port, "data", "snap1")
    action["pipeline"][0][-1] += f"; touch {marker}"
    executor = Executor(load_config(str(target.config_path)), Zfs("zfs"),
                        RecordingClient())  # type: ignore[arg-type]
    outcomes = executor.execute({"actions": [action]})
    assert [o.status for o in outcomes] == ["error"]
    assert "refused by the agent" in outcomes[0].message
    assert not marker.exists() and target.snapshots("data") == []
