"""Fixtures for the agent's unit tests: a fake ``zfs``/``ssh`` on PATH, and a stub witness.

The fakes (``fakezfs.py``) keep their pools in a JSON file and log every argv, so a test can
check both what the agent ran and what it achieved, without real ZFS (that is
``tests/e2e``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from zfs_sync.agent.config import AgentConfig, DatasetFilter

FAKE = Path(__file__).resolve().parent / "fakezfs.py"
SYSTEM_ID = "target-0000-1111"


@dataclass
class FakeZfs:
    """Handle on the fake's state file and its log of commands."""

    state_path: Path
    log_path: Path

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())  # type: ignore[no-any-return]

    def write(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state, indent=1))

    def update(self, **changes: Any) -> None:
        self.write({**self.state(), **changes})

    def calls(self, kind: str = "zfs") -> list[list[str]]:
        if not self.log_path.exists():
            return []
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [entry["argv"] for entry in lines if entry["cmd"] == kind]

    def entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def snapshots(self, dataset: str) -> list[str]:
        datasets = self.state()["datasets"]
        return [s["name"] for s in datasets.get(dataset, {}).get("snapshots", [])]

    def clear_log(self) -> None:
        self.log_path.write_text("")


def snap(name: str, guid: int, txg: int, creation: int = 1_700_000_000) -> dict[str, Any]:
    return {"name": name, "guid": guid, "createtxg": txg, "creation": creation + txg,
            "used": 4096 * txg, "referenced": 65536, "holds": []}


def two_pools(flavor: str) -> dict[str, Any]:
    """Source pool ``tank`` (tank/data with a, b, c) and target pool ``backup`` (empty)."""
    return {
        "flavor": flavor,
        "txg": 100,
        "datasets": {
            "tank": {"type": "filesystem", "snapshots": []},
            "tank/data": {"type": "filesystem", "snapshots": [
                snap("a", 11, 10), snap("b", 12, 20), snap("c", 13, 30)]},
            "backup": {"type": "filesystem", "snapshots": []},
        },
    }


@pytest.fixture(params=["openzfs", "zfsfuse"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flavor: str) -> FakeZfs:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("zfs", "ssh"):
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\nimport os, runpy\n"
            f"os.environ['FAKE_AS'] = {name!r}\n"
            f"runpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
        )
        script.chmod(0o755)
    handle = FakeZfs(tmp_path / "zfs-state.json", tmp_path / "zfs-log.jsonl")
    handle.write(two_pools(flavor))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ZFS_STATE", str(handle.state_path))
    monkeypatch.setenv("FAKE_ZFS_LOG", str(handle.log_path))
    return handle


def make_config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "server_url": "http://127.0.0.1:9/api/v1", "system_id": SYSTEM_ID, "api_key": "k" * 32,
        "datasets": DatasetFilter(("backup",)), "lock_file": str(tmp_path / "agent.lock"),
        "progress_interval_seconds": 60,
    }
    values.update(overrides)
    return AgentConfig(**values)


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return make_config(tmp_path)


def action(sequence: int = 1, **overrides: Any) -> dict[str, Any]:
    """An action exactly as the witness's command builder makes it (pull tank -> backup)."""
    base = overrides.pop("incremental_base", None)
    snapshot = overrides.pop("snapshot_name", "c")
    rollback = overrides.pop("rollback_to_base", False)
    intermediate = overrides.pop("include_intermediate", base is not None)
    send = ["zfs", "send"]
    if base is not None:
        send += ["-I" if intermediate else "-i", f"tank/data@{base}"]
    send.append(f"tank/data@{snapshot}")
    pipeline: list[list[str]] = []
    if rollback:
        pipeline.append(["zfs", "rollback", f"backup/data@{base}"])
    pipeline += [
        ["ssh", "-n", "-o", "BatchMode=yes", "-p", "22", "zfs@source.example",
         " ".join(send)],
        ["zfs", "receive", "-u", "backup/data"],
    ]
    raw = {
        "action_id": f"act{sequence}",
        "action_type": "incremental_send" if base is not None else "full_send",
        "sync_group_id": "group-1",
        "dataset": "data",
        "source_system_id": "source-1",
        "target_system_id": SYSTEM_ID,
        "source_pool": "tank",
        "source_dataset": "tank/data",
        "target_pool": "backup",
        "target_dataset": "backup/data",
        "snapshot_name": snapshot,
        "snapshot_id": f"snap-{snapshot}",
        "incremental_base": base,
        "is_incremental": base is not None,
        "include_intermediate": intermediate,
        "rollback_to_base": rollback,
        "estimated_size": 1000,
        "priority": 2,
        "sequence": sequence,
        "source_ssh_hostname": "source.example",
        "source_ssh_user": "zfs",
        "source_ssh_port": 22,
        "pipeline": pipeline,
        "sync_command": None,
        "reason": None,
    }
    raw.update(overrides)
    return raw


def instructions(*actions: dict[str, Any]) -> dict[str, Any]:
    return {"system_id": SYSTEM_ID, "timestamp": "2026-01-01T00:00:00Z",
            "action_count": len(actions), "sync_groups": ["group-1"], "actions": list(actions)}


class RecordingClient:
    """Stands in for WitnessClient in executor tests: records what would be sent."""

    def __init__(self, instructions: dict[str, Any] | None = None) -> None:
        self.states: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self._instructions = instructions or {"actions": []}

    def post_state(self, body: dict[str, Any]) -> None:
        self.states.append(body)

    def report(self, system_id: str, snapshots: Any, datasets: Any, scope: Any = None) -> Any:
        self.reports.append({"snapshots": snapshots, "datasets": datasets, "scope": scope})
        return {"created": len(snapshots), "updated": 0, "deleted": 0, "unchanged": 0}

    def heartbeat(self, system_id: str, body: dict[str, Any]) -> Any:
        self.heartbeats.append(body)
        return {"system_id": system_id, "status": "online"}

    def instructions(self, system_id: str) -> dict[str, Any]:
        return self._instructions

    def close(self) -> None:
        pass


@dataclass
class StubWitness:
    """A tiny HTTP witness for CLI tests: canned answers, every request recorded."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # "METHOD /path" -> (status, body)


@pytest.fixture
def stub_witness() -> Iterator[StubWitness]:
    stub = StubWitness("")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.split("?")[0]
            stub.requests.append({"method": self.command, "path": self.path, "body": body,
                                  "key": self.headers.get("X-API-Key")})
            status, answer = stub.answers.get(f"{self.command} {path}", (200, {}))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()
