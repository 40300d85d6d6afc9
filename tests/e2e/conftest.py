"""End-to-end fixtures: real ZFS (zfs-fuse, file-backed pools), real SSH on loopback, a real
witness process, and agents run as real ``zfs-sync-agent`` processes.

Two "hosts" live on this one machine: each has its own pool (``src...``/``dst...``, different
names, as real hosts often have) and its own agent whose ``datasets`` filter covers only that
pool. The target pulls from the source through the test sshd as root.

Missing zfs-fuse/sshd: a failure in CI (``CI=true``), a skip with the reason elsewhere.
CI needs the Debian packages ``zfs-fuse`` and ``openssh-server`` (and ``openssh-client``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e import harness
from tests.live import live_witness

ADMIN_TOKEN = "e2e-admin-token-0123456789"
ADMIN = {"X-API-Key": ADMIN_TOKEN}


def _require_tools() -> None:
    missing = harness.missing_requirements()
    if not missing:
        return
    message = (f"ZFS end-to-end tests need {', '.join(missing)} "
               "(apt-get install -y zfs-fuse openssh-server openssh-client; run as root)")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def zfs_daemon() -> Iterator[None]:
    _require_tools()
    with harness.zfs_fuse_daemon():
        yield


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: None) -> Iterator[harness.Ssh]:
    with harness.private_sshd(tmp_path_factory.mktemp("sshd")) as ssh:
        yield ssh


@pytest.fixture
def witness_url(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "witness"
    data.mkdir()
    with live_witness(data, ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN) as url:
        yield url


def pool_name(role: str) -> str:
    # Letters first (a pool name must start with one), unique across workers and runs.
    return f"{role}{secrets.token_hex(3)}"


def zfs(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return harness.run("zfs", *argv, check=check)


@dataclass
class Host:
    """One simulated host: a pool, a registered system, and an agent config for it."""

    name: str
    pool: str
    mountpoint: Path
    system_id: str
    config_path: Path
    env: dict[str, str]

    def agent(self, *args: str, check: bool = False,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the real agent (``python -m zfs_sync.agent``) as this host."""
        argv = [sys.executable, "-m", "zfs_sync.agent", "--config", str(self.config_path),
                *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env=self.env, check=False, stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def dataset(self, logical: str) -> str:
        return f"{self.pool}/{logical}" if logical else self.pool

    def path(self, logical: str) -> Path:
        return self.mountpoint / logical

    def snapshots(self, logical: str) -> list[str]:
        out = zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", self.dataset(logical),
                  check=False).stdout
        prefix = self.dataset(logical) + "@"
        return [line[len(prefix):] for line in out.split() if line.startswith(prefix)]

    def guids(self, logical: str) -> dict[str, str]:
        out = zfs("get", "-H", "-p", "-r", "-o", "name,value", "guid", self.dataset(logical)).stdout
        prefix = self.dataset(logical) + "@"
        return {n[len(prefix):]: g for n, g in (line.split("\t") for line in out.splitlines())
                if n.startswith(prefix)}

    def write(self, logical: str, name: str, content: str | bytes) -> None:
        target = self.path(logical) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)

    def snapshot(self, logical: str, name: str) -> None:
        zfs("snapshot", f"{self.dataset(logical)}@{name}")

    def files(self, logical: str) -> dict[str, bytes]:
        """The dataset's live contents (mounted for the read, unmounted again if it was)."""
        dataset = self.dataset(logical)
        was_mounted = zfs("get", "-H", "-o", "value", "mounted", dataset).stdout.strip() == "yes"
        if not was_mounted:
            zfs("mount", dataset)
        children = [n[len(dataset) + 1:] + "/" for n in zfs(
            "list", "-H", "-o", "name", "-r", dataset).stdout.split("\n") if n.startswith(
            dataset + "/")]  # their files belong to them, mounted or not
        try:
            root = self.path(logical)
            found = {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
            return {name: path.read_bytes() for name, path in found.items()
                    if not any(name.startswith(child) for child in children)}
        finally:
            if not was_mounted:
                zfs("unmount", dataset)


@dataclass
class Fleet:
    """The witness (if any), the sshd, and the hosts registered with it."""

    url: str | None
    ssh: harness.Ssh
    directory: Path
    hosts: list[Host] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.api}{path}", headers=ADMIN, timeout=30,
                                 **kwargs)
        assert response.status_code < 400, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def host(self, name: str, role: str, ssh_port: int | None = None,
             **config: Any) -> Host:
        pool = pool_name(role)
        stack = harness.file_pool(pool, self.directory / "pools")
        mountpoint = stack.__enter__()
        self._exits.append(stack)
        self.pools.append(pool)
        if self.url is None:  # agent-only tests: no witness to register with
            system = {"id": f"sys-{name}", "api_key": "unused-key"}
        else:
            system = self.call("POST", "/systems", json={
                "hostname": name, "platform": "linux", "ssh_hostname": "127.0.0.1",
                "ssh_user": self.ssh.user, "ssh_port": ssh_port or self.ssh.port})
        values = {
            "server_url": self.url or "http://127.0.0.1:9", "system_id": system["id"],
            "api_key": system["api_key"],
            "datasets": {"include": [pool]}, "ssh_identity": str(self.ssh.identity),
            "ssh_known_hosts": str(self.ssh.known_hosts),
            "lock_file": str(self.directory / f"{name}.lock"), "interval_seconds": 300,
            **config,
        }
        path = self.directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
        host = Host(name, pool, mountpoint, system["id"], path, env)
        self.hosts.append(host)
        return host

    def group(self, source: Host, target: Host, **extra: Any) -> str:
        body = {"name": f"g-{secrets.token_hex(3)}", "directional": True,
                "hub_system_id": source.system_id, "sync_interval_seconds": 60,
                "members": [{"system_id": source.system_id, "root": source.pool},
                            {"system_id": target.system_id, "root": target.pool}], **extra}
        return str(self.call("POST", "/sync-groups", json=body)["id"])

    def instructions(self, host: Host, commands: bool = False) -> dict[str, Any]:
        params = {"include_commands": "true"} if commands else None
        return self.call("GET", f"/sync/instructions/{host.system_id}",  # type: ignore[no-any-return]
                         params=params)

    def states(self, host: Host) -> list[dict[str, Any]]:
        return self.call("GET", "/sync/states", params={"system_id": host.system_id})  # type: ignore[no-any-return]

    def conflicts(self, group_id: str) -> list[dict[str, Any]]:
        return self.call("GET", "/conflicts", params={"sync_group_id": group_id})  # type: ignore[no-any-return]

    def close(self) -> None:
        for stack in reversed(self._exits):
            stack.__exit__(None, None, None)

    def __post_init__(self) -> None:
        self._exits: list[Any] = []


@pytest.fixture
def fleet(witness_url: str, sshd: harness.Ssh, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(witness_url, sshd, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def hosts(sshd: harness.Ssh, tmp_path: Path) -> Iterator[Fleet]:
    """Pools and agent configs without a witness (the agent driven in-process)."""
    fleet = Fleet(None, sshd, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def populate(host: Host, logical: str, count: int, prefix: str = "snap") -> None:
    """A dataset with ``count`` snapshots, each adding a file (and changing one)."""
    zfs("create", "-p", host.dataset(logical))
    for index in range(1, count + 1):
        host.write(logical, f"file{index}.txt", f"{logical} #{index}\n" * index)
        host.write(logical, "changing.txt", f"version {index}\n")
        host.snapshot(logical, f"{prefix}{index}")


def dump(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def as_json(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
