"""The whole loop on real ZFS: a real witness, two (or three) simulated hosts with their own
pools and agents, transfers over real SSH on loopback (the issue's acceptance list (a)-(g),
and the operations guide's own sync script)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Fleet, Host, dump, populate, zfs
from tests.e2e.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
DESTRUCTIVE = re.compile(r"\brollback\b.*\s-[a-zA-Z]*[rRf]|\breceive\b.*\s-[a-zA-Z]*F|\bdestroy\b")


def replicate_by_hand(source: Host, target: Host, logical: str, snapshots: list[str]) -> None:
    """Seed a target the way an admin would have before zfs-sync: plain send | receive."""
    first = f"{source.dataset(logical)}@{snapshots[0]}"
    streams = [["zfs", "send", first]]
    if len(snapshots) > 1:
        streams.append(["zfs", "send", "-I", first,
                        f"{source.dataset(logical)}@{snapshots[-1]}"])
    for send in streams:
        sender = subprocess.Popen(send, stdout=subprocess.PIPE)
        receiver = subprocess.run(["zfs", "receive", "-u", target.dataset(logical)],
                                  stdin=sender.stdout, capture_output=True, text=True,
                                  check=False)
        assert sender.wait() == 0 and receiver.returncode == 0, receiver.stderr


def wait_for_actions(fleet: Fleet, host: Host, seconds: float = 150) -> dict[str, Any]:
    """Wait out the group's cadence (sync_interval_seconds, at least 60 s)."""
    deadline = time.monotonic() + seconds
    while True:
        plan = fleet.instructions(host)
        if plan["action_count"] or time.monotonic() > deadline:
            return plan
        time.sleep(3)


def state_of(fleet: Fleet, host: Host, dataset: str = "data") -> dict[str, Any]:
    states = [s for s in fleet.states(host) if s.get("dataset") == dataset]
    assert len(states) == 1, states
    return states[0]


def assert_same(source: Host, target: Host, logical: str = "data") -> None:
    assert target.guids(logical) == source.guids(logical)
    assert target.files(logical) == source.files(logical)


def no_destructive_command(plan: dict[str, Any]) -> None:
    for action in plan["actions"]:
        assert action["action_type"] in ("full_send", "incremental_send"), action
        for stage in action["pipeline"]:
            assert not DESTRUCTIVE.search(" ".join(stage)), stage


# (a) ------------------------------------------------------------------------------------------


def test_initial_full_then_incremental(fleet: Fleet) -> None:
    source, target = fleet.host("alpha", "src"), fleet.host("beta", "dst")
    populate(source, "data", 5)
    fleet.group(source, target)
    source.agent("run", check=True)
    result = target.agent("run")
    assert result.returncode == 0, dump(result)
    assert target.snapshots("data") == [f"snap{i}" for i in range(1, 6)]
    assert_same(source, target)
    assert state_of(fleet, target)["status"] == "in_sync"

    source.write("data", "later.bin", os.urandom(300_000))
    source.snapshot("data", "snap6")
    source.write("data", "changing.txt", "version 7\n")
    source.snapshot("data", "snap7")
    source.agent("run", check=True)
    plan = wait_for_actions(fleet, target)
    assert [a["action_type"] for a in plan["actions"]] == ["incremental_send"]
    assert plan["actions"][0]["incremental_base"] == "snap5"
    target.agent("run", check=True)
    assert target.snapshots("data")[-2:] == ["snap6", "snap7"]
    assert_same(source, target)


# (b) ------------------------------------------------------------------------------------------


def test_nested_datasets(fleet: Fleet) -> None:
    source, target = fleet.host("alpha", "src"), fleet.host("beta", "dst")
    for logical in ("data", "data/vm", "data/vm/disk0", "data/home"):
        populate(source, logical, 3)
    fleet.group(source, target)
    source.agent("run", check=True)
    target.agent("report", check=True)
    target.agent("heartbeat", check=True)  # the witness plans only for online hosts
    plan = fleet.instructions(target)
    order = [a["dataset"] for a in plan["actions"]]
    assert order.index("data") < order.index("data/vm") < order.index("data/vm/disk0")
    result = target.agent("run")
    assert result.returncode == 0, dump(result)
    for logical in ("data", "data/vm", "data/vm/disk0", "data/home"):
        assert_same(source, target, logical)


# (c) ------------------------------------------------------------------------------------------


def test_diverged_target_is_a_conflict_and_loses_nothing_until_resolved(fleet: Fleet) -> None:
    source, target = fleet.host("alpha", "src"), fleet.host("beta", "dst")
    populate(source, "data", 3)
    replicate_by_hand(source, target, "data", ["snap1", "snap3"])
    zfs("mount", target.dataset("data"))
    target.write("data", "mine.txt", "the target's own work\n")
    target.snapshot("data", "mine")
    zfs("unmount", target.dataset("data"))
    source.write("data", "new.txt", "new\n")
    source.snapshot("data", "snap4")
    group = fleet.group(source, target)
    source.agent("run", check=True)
    result = target.agent("run")
    assert result.returncode == 0, dump(result)

    (conflict,) = [c for c in fleet.conflicts(group) if c["status"] == "open"]
    assert conflict["type"] == "target_diverged"
    assert state_of(fleet, target)["status"] == "conflict"
    assert "mine" in target.snapshots("data") and "snap4" not in target.snapshots("data")
    assert target.files("data")["mine.txt"] == b"the target's own work\n"
    # zfs-fuse would even accept an incremental onto the diverged target, so the safety is
    # in what was planned and run: nothing that could destroy `mine`.
    plan = fleet.instructions(target, commands=True)
    assert plan["action_count"] == 0
    assert not DESTRUCTIVE.search(result.stderr) and "zfs send" not in result.stderr

    fleet.call("POST", f"/conflicts/{conflict['id']}/resolve",
               json={"strategy": "rollback_target", "note": "e2e"})
    plan = fleet.instructions(target)
    assert [a["action_type"] for a in plan["actions"]] == ["rollback", "incremental_send"]
    assert plan["actions"][0]["pipeline"] == [
        ["zfs", "rollback", "-r", f"{target.dataset('data')}@snap3"]]
    result = target.agent("run")
    assert result.returncode == 0, dump(result)
    assert target.snapshots("data") == ["snap1", "snap2", "snap3", "snap4"]
    assert_same(source, target)


# (d) ------------------------------------------------------------------------------------------


def test_failing_transfer_is_an_error_and_retried(fleet: Fleet) -> None:
    closed = free_port()
    source = fleet.host("alpha", "src", ssh_port=closed)
    target = fleet.host("beta", "dst")
    populate(source, "data", 2)
    fleet.group(source, target)
    source.agent("run", check=True)
    result = target.agent("run")
    assert result.returncode == 1, dump(result)
    state = state_of(fleet, target)
    assert state["status"] == "error"
    assert f"port {closed}: Connection refused" in state["error_message"]

    again = target.agent("run")  # the next cycle tries again (and fails again)
    assert again.returncode == 1 and f"port {closed}" in again.stderr
    fleet.call("PUT", f"/systems/{source.system_id}", json={"ssh_port": fleet.ssh.port})
    fixed = target.agent("run")
    assert fixed.returncode == 0, dump(fixed)
    assert_same(source, target)
    assert state_of(fleet, target)["status"] == "in_sync"


# (e) ------------------------------------------------------------------------------------------


def test_dry_run_prints_the_exact_commands_and_changes_nothing(fleet: Fleet) -> None:
    source, target = fleet.host("alpha", "src"), fleet.host("beta", "dst")
    populate(source, "data", 3)
    fleet.group(source, target)
    source.agent("run", check=True)
    target.agent("report", check=True)
    target.agent("heartbeat", check=True)
    def claims() -> list[tuple[str, str, str | None]]:  # lag_seconds moves with the clock
        return [(s["dataset"], s["status"], s["error_message"]) for s in fleet.states(target)]

    states_before = claims()
    dry = target.agent("sync", "--dry-run")
    assert dry.returncode == 0, dump(dry)
    pipelines = [line for line in dry.stdout.splitlines() if " | " in line]
    assert len(pipelines) == 2 and all("zfs send" in p for p in pipelines)
    assert target.snapshots("data") == [] and claims() == states_before
    assert all(status != "syncing" for _, status, _ in states_before)
    real = target.agent("sync")
    assert real.returncode == 0, dump(real)
    ran = re.findall(r"pulling [^:]+: (.*)", real.stderr)
    assert ran == pipelines  # exactly what the dry run printed
    assert_same(source, target)


# (f) ------------------------------------------------------------------------------------------


def test_may_destroy_refuses_a_protected_base(fleet: Fleet) -> None:
    source, target = fleet.host("alpha", "src"), fleet.host("beta", "dst")
    populate(source, "data", 3)
    fleet.group(source, target)
    source.agent("run", check=True)
    target.agent("run", check=True)
    source.agent("report", check=True)
    base = f"{source.dataset('data')}@snap3"
    refused = source.agent("may-destroy", base)
    assert refused.returncode == 1 and "protects it" in refused.stdout, dump(refused)
    assert target.agent("may-destroy", f"{target.dataset('data')}@snap3").returncode == 1
    allowed = source.agent("may-destroy", f"{source.dataset('data')}@snap1")
    assert allowed.returncode == 0, dump(allowed)
    # As a sanoid pre-pruning hook: sanoid passes the snapshot in its environment.
    hook = ROOT / "contrib" / "agent" / "sanoid-pre-prune.sh"
    env = {**source.env, "ZFS_SYNC_AGENT_CONFIG": str(source.config_path),
           "ZFS_SYNC_AGENT": str(Path(sys.executable).parent / "zfs-sync-agent"),
           "SANOID_TARGET": source.dataset("data"), "SANOID_SNAPNAME": "snap3"}
    hooked = subprocess.run(["sh", str(hook)], env=env, capture_output=True, check=False)
    assert hooked.returncode != 0


# (g) ------------------------------------------------------------------------------------------


def test_modified_target_still_receives(fleet: Fleet) -> None:
    source, target = fleet.host("alpha", "src"), fleet.host("beta", "dst")
    populate(source, "data", 2)
    replicate_by_hand(source, target, "data", ["snap1", "snap2"])
    zfs("mount", target.dataset("data"))
    target.write("data", "scribble.txt", "written on the backup by mistake\n")
    zfs("unmount", target.dataset("data"))
    source.write("data", "fresh.txt", "fresh\n")
    source.snapshot("data", "snap3")
    fleet.group(source, target)
    source.agent("run", check=True)
    target.agent("report", check=True)
    target.agent("heartbeat", check=True)
    (action,) = fleet.instructions(target)["actions"]
    assert action["rollback_to_base"] is True
    assert action["pipeline"][0] == ["zfs", "rollback", f"{target.dataset('data')}@snap2"]
    result = target.agent("run")
    assert result.returncode == 0, dump(result)
    assert "scribble.txt" not in target.files("data")
    assert_same(source, target)


# the guide's script -----------------------------------------------------------------------------


def guide_script() -> str:
    """The "Sync Execution Automation" script of the operations guide, as written there."""
    shared = ROOT.parent / "shared" / "spec" / "OPERATIONS_GUIDE.md"
    text = shared.read_text()
    section = text.split("### Sync Execution Automation", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def configure(script: str, api_url: str, api_key: str, system_id: str) -> str:
    """Fill in the script's three configuration lines, as its reader is told to; nothing else
    changes."""
    values = {"API_URL": api_url, "API_KEY": api_key, "SYSTEM_ID": system_id}
    configured = script
    for name, value in values.items():
        configured, count = re.subn(rf'^{name}=".*"$', f'{name}="{value}"', configured,
                                    flags=re.MULTILINE)
        assert count == 1, name
    return configured


def test_the_guides_sync_script_moves_the_same_data(fleet: Fleet, tmp_path: Path) -> None:
    source = fleet.host("alpha", "src")
    by_agent, by_script = fleet.host("beta", "dst"), fleet.host("gamma", "dst")
    populate(source, "data", 5)
    group = fleet.group(source, by_agent)
    fleet.call("POST", f"/sync-groups/{group}/systems",
               json={"system_id": by_script.system_id, "root": by_script.pool})
    source.agent("run", check=True)
    by_agent.agent("run", check=True)
    # The scripted host reports and heartbeats with the agent; only the sync is the guide's.
    by_script.agent("report", check=True)
    by_script.agent("heartbeat", check=True)
    key = next(line.split(": ", 1)[1] for line in by_script.config_path.read_text().splitlines()
               if line.startswith("api_key:"))
    script = tmp_path / "zfs-sync-execute.sh"
    script.write_text(configure(guide_script(), fleet.api, key, by_script.system_id))
    # ssh finds the test's key and known_hosts through a wrapper first on PATH.
    env = {**by_script.env, "PATH": f"{fleet.ssh.wrapper_dir}:{by_script.env['PATH']}"}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                            timeout=600, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, dump(result)
    assert "Found 2 sync actions" in result.stdout and "ERROR" not in result.stdout
    assert by_script.guids("data") == by_agent.guids("data") == source.guids("data")
    assert by_script.files("data") == by_agent.files("data") == source.files("data")
    by_script.agent("report", check=True)
    assert state_of(fleet, by_script)["status"] == "in_sync"

