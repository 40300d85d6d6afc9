"""The ``zfs-sync-agent`` commands over real HTTP (a stub witness) and the fake zfs/ssh."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agent.conftest import SYSTEM_ID, FakeZfs, StubWitness, action, instructions
from zfs_sync.agent.main import main

PREFIX = "/api/v1"


def write_config(tmp_path: Path, stub: StubWitness, **extra: Any) -> str:
    values = {"server_url": stub.url, "system_id": SYSTEM_ID, "api_key": "key-0123456789",
              "datasets": {"include": ["backup"]}, "lock_file": str(tmp_path / "agent.lock"),
              **extra}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def requests_to(stub: StubWitness, method: str, path: str) -> list[dict[str, Any]]:
    return [r for r in stub.requests if r["method"] == method
            and r["path"].split("?")[0] == PREFIX + path]


def test_register_writes_a_private_config(tmp_path: Path, stub_witness: StubWitness,
                                          fake: FakeZfs) -> None:
    stub_witness.answers[f"POST {PREFIX}/systems"] = (201, {"id": "new-id-1", "api_key": "k" * 40})
    path = tmp_path / "etc" / "agent.yaml"
    code = main(["--config", str(path), "register", "--server", stub_witness.url,
                 "--admin-token", "admin-token-123", "--hostname", "alpha",
                 "--ssh-hostname", "alpha.example", "--ssh-user", "zfs", "--include", "backup"])
    assert code == 0
    (request,) = stub_witness.requests
    assert request["key"] == "admin-token-123"
    assert request["body"] == {"hostname": "alpha", "platform": "linux", "ssh_port": 22,
                               "zfs_path": "zfs", "ssh_hostname": "alpha.example",
                               "ssh_user": "zfs"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = yaml.safe_load(path.read_text())
    assert written["system_id"] == "new-id-1" and written["api_key"] == "k" * 40
    assert written["datasets"] == {"include": ["backup"], "exclude": []}
    # A second registration does not overwrite the config by accident.
    assert main(["--config", str(path), "register", "--server", stub_witness.url,
                 "--admin-token", "x"]) == 2


def test_report_sends_full_state_of_the_filtered_datasets(tmp_path: Path, fake: FakeZfs,
                                                          stub_witness: StubWitness) -> None:
    config = write_config(tmp_path, stub_witness, datasets={"include": ["tank"]})
    assert main(["--config", config, "report"]) == 0
    (put,) = requests_to(stub_witness, "PUT", f"/systems/{SYSTEM_ID}/snapshots")
    assert put["key"] == "key-0123456789"
    assert [d["name"] for d in put["body"]["datasets"]] == ["tank", "tank/data"]
    first = put["body"]["snapshots"][0]
    assert first == {"dataset": "tank/data", "name": "a", "timestamp": 1_700_000_010,
                     "guid": "11", "createtxg": 10, "used": 40960, "referenced": 65536}
    assert "scope" not in put["body"]


def test_heartbeat_reports_capabilities(tmp_path: Path, fake: FakeZfs, flavor: str,
                                        stub_witness: StubWitness) -> None:
    config = write_config(tmp_path, stub_witness)
    assert main(["--config", config, "heartbeat", "--interval", "300"]) == 0
    (beat,) = requests_to(stub_witness, "POST", f"/systems/{SYSTEM_ID}/heartbeat")
    body = beat["body"]
    assert body["interval_seconds"] == 300 and body["zfs_path"] == "zfs"
    if flavor == "openzfs":
        assert body["zfs_version"] == "zfs-2.1.11-1"
        assert all(body["capabilities"].values())
    else:
        assert "zfs_version" not in body
        assert body["capabilities"] == {"compressed_send": False, "raw_send": False,
                                        "resumable_receive": False, "receive_o": False,
                                        "bookmarks": False, "holds": True}


def test_sync_dry_run_over_http(tmp_path: Path, fake: FakeZfs, stub_witness: StubWitness,
                                capsys: pytest.CaptureFixture[str]) -> None:
    stub_witness.answers[f"GET {PREFIX}/sync/instructions/{SYSTEM_ID}"] = (
        200, instructions(action(1, snapshot_name="a")))
    config = write_config(tmp_path, stub_witness)
    assert main(["--config", config, "sync", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'zfs send tank/data@a' | zfs receive -u backup/data" in out
    assert requests_to(stub_witness, "POST", "/sync/states") == []
    assert "backup/data" not in fake.state()["datasets"]


def test_run_is_one_cycle_and_reports_failures(tmp_path: Path, fake: FakeZfs,
                                               stub_witness: StubWitness) -> None:
    stub_witness.answers[f"GET {PREFIX}/sync/instructions/{SYSTEM_ID}"] = (
        200, instructions(action(1, snapshot_name="a")))
    config = write_config(tmp_path, stub_witness)
    assert main(["--config", config, "run"]) == 0
    order = [(r["method"], r["path"].split("?")[0].replace(PREFIX, "")) for r in
             stub_witness.requests]
    assert order == [
        ("PUT", f"/systems/{SYSTEM_ID}/snapshots"),
        ("POST", f"/systems/{SYSTEM_ID}/heartbeat"),
        ("GET", f"/sync/instructions/{SYSTEM_ID}"),
        ("POST", "/sync/states"), ("POST", "/sync/states"),
        ("PUT", f"/systems/{SYSTEM_ID}/snapshots"),  # the changed dataset, at once
        ("POST", f"/systems/{SYSTEM_ID}/heartbeat"),
    ]
    assert stub_witness.requests[5]["body"]["scope"] == ["backup/data"]
    fake.update(fail={"receive": "cannot receive: injected"})
    stub_witness.answers[f"GET {PREFIX}/sync/instructions/{SYSTEM_ID}"] = (
        200, instructions(action(1, snapshot_name="a", target_dataset="backup/two",
                                 pipeline=[["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                                            "zfs@source.example", "zfs send tank/data@a"],
                                           ["zfs", "receive", "-u", "backup/two"]])))
    assert main(["--config", config, "run"]) == 1


def test_overlapping_run_exits_quietly(tmp_path: Path, fake: FakeZfs,
                                       stub_witness: StubWitness) -> None:
    config = write_config(tmp_path, stub_witness)
    with open(tmp_path / "agent.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["--config", config, "run"]) == 0
    assert stub_witness.requests == []


@pytest.mark.parametrize("snapshot, code", [("backup/data@a", 1), ("backup/data@b", 0)])
def test_may_destroy(tmp_path: Path, fake: FakeZfs, stub_witness: StubWitness, snapshot: str,
                     code: int) -> None:
    stub_witness.answers[f"GET {PREFIX}/systems/{SYSTEM_ID}/protected-snapshots"] = (
        200, [{"dataset": "backup/data", "snapshot": "a", "reason": "base"}])
    config = write_config(tmp_path, stub_witness)
    assert main(["--config", config, "may-destroy", snapshot]) == code


def test_may_destroy_from_sanoid_environment_and_fails_safe(
        tmp_path: Path, fake: FakeZfs, stub_witness: StubWitness,
        monkeypatch: pytest.MonkeyPatch) -> None:
    stub_witness.answers[f"GET {PREFIX}/systems/{SYSTEM_ID}/protected-snapshots"] = (
        200, {"snapshots": [{"dataset": "backup/data", "name": "auto_1", "reason": "owed"}]})
    config = write_config(tmp_path, stub_witness)
    monkeypatch.setenv("SANOID_TARGET", "backup/data")
    monkeypatch.setenv("SANOID_SNAPNAME", "auto_1")
    assert main(["--config", config, "may-destroy"]) == 1
    stub_witness.answers[f"GET {PREFIX}/systems/{SYSTEM_ID}/protected-snapshots"] = (
        500, {"detail": "boom"})
    assert main(["--config", config, "may-destroy"]) == 2  # cannot tell: keep it
    assert main(["--config", config, "may-destroy", "backup/data@x;rm"]) == 2


def test_config_check(tmp_path: Path, fake: FakeZfs, stub_witness: StubWitness,
                      capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, stub_witness)
    assert main(["--config", config, "config-check"]) == 0
    out = capsys.readouterr().out
    assert "api_key: '***'" in out and "key-0123456789" not in out
    assert "accepts this system's key" in out
    stub_witness.answers[f"GET {PREFIX}/sync/instructions/{SYSTEM_ID}"] = (
        401, {"detail": "Invalid API key.", "hint": "Use the system's own key."})
    assert main(["--config", config, "config-check"]) == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_url: http://w\nsystem_id: s\napi_key: k\nmax_paralel: 3\n")
    assert main(["--config", str(bad), "config-check", "--offline"]) == 2


def test_sigterm_aborts_the_transfer_and_reports_it(tmp_path: Path, fake: FakeZfs,
                                                    stub_witness: StubWitness) -> None:
    """A slow transfer (bandwidth-limited) is aborted cleanly by SIGTERM: the sender is
    stopped, the receiver sees a truncated stream, the witness hears `error`, exit 143."""
    fake.update(stream_size=50 << 20)
    stub_witness.answers[f"GET {PREFIX}/sync/instructions/{SYSTEM_ID}"] = (
        200, instructions(action(1, snapshot_name="a")))
    config = write_config(tmp_path, stub_witness, bandwidth_limit="1M")
    proc = subprocess.Popen([sys.executable, "-m", "zfs_sync.agent", "--config", config,
                             "sync"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not requests_to(stub_witness, "POST", "/sync/states") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    states = requests_to(stub_witness, "POST", "/sync/states")
    assert [s["body"]["status"] for s in states] == ["syncing", "error"]
    assert "interrupted" in states[1]["body"]["error_message"]
    assert "backup/data" not in fake.state()["datasets"]  # the receive did not complete
    assert os.path.exists(tmp_path / "agent.lock")  # the lock file stays; the flock is gone


def test_report_refuses_when_a_pool_is_not_imported(tmp_path: Path, fake: FakeZfs,
                                                    stub_witness: StubWitness) -> None:
    """An empty full report would make the witness forget every snapshot of that pool."""
    config = write_config(tmp_path, stub_witness, datasets={"include": ["backup", "gone"]})
    assert main(["--config", config, "report"]) == 4
    assert stub_witness.requests == []
    config = write_config(tmp_path, stub_witness, datasets={"include": ["backup/not-yet"]})
    assert main(["--config", config, "report"]) == 0  # a dataset may arrive later; a pool not


def test_status_shows_health_states_and_pending(tmp_path: Path, fake: FakeZfs,
                                                stub_witness: StubWitness,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    stub_witness.answers[f"GET {PREFIX}/systems/{SYSTEM_ID}/health"] = (
        200, {"hostname": "beta", "status": "online", "heartbeat_age_seconds": 12})
    stub_witness.answers[f"GET {PREFIX}/sync/states"] = (
        200, [{"dataset": "data", "status": "error", "error_message": "zfs receive exited 1"}])
    stub_witness.answers[f"GET {PREFIX}/sync/instructions/{SYSTEM_ID}"] = (
        200, instructions(action(1)))
    config = write_config(tmp_path, stub_witness)
    assert main(["--config", config, "status"]) == 0
    out = capsys.readouterr().out
    assert "(beta): online, last heartbeat 12 s ago" in out
    assert "data: error (zfs receive exited 1)" in out and "pending actions: 1" in out
