"""A fixed demo fleet (built through the public API) and an in-process server.

Used by the browser tests, ``scripts/screenshots`` and ``bench/dashboard.py``. Everything is
relative to a fixed ``now`` that the caller's clock shows while the fleet is built.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
API = "/api/v1"
Clock = Callable[[datetime], None]


def guid(*parts: str) -> str:
    return str(int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:15], 16))


def snap(root: str, logical: str, name: str, when: datetime, own: str = "") -> dict[str, Any]:
    return {"name": name, "pool": root.split("/")[0], "dataset": f"{root}/{logical}",
            "timestamp": when.isoformat(), "guid": guid(own, logical, name),
            "createtxg": int(when.timestamp()) + (1 if own else 0),
            "used": 4096 * (1 + int(when.timestamp()) % 97), "referenced": 1 << 30}


def series(root: str, logical: str, end: datetime, count: int,
           step: timedelta) -> list[dict[str, Any]]:
    """``count`` snapshots of ``logical``, one every ``step``, the newest at ``end``."""
    out = []
    for index in range(count):
        when = end - step * (count - 1 - index)
        out.append(snap(root, logical, f"auto-{when:%Y%m%d-%H%M}", when))
    return out


@dataclass
class Fleet:
    client: Any
    admin: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        response = self.client.post(API + path, json=body, headers=headers or self.admin)
        if response.status_code >= 300:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def register(self, hostname: str, platform: str = "linux", **extra: Any) -> str:
        data = self.post("/systems", {"hostname": hostname, "platform": platform, **extra})
        self.ids[hostname] = data["id"]
        self.keys[hostname] = {"X-API-Key": data["api_key"]}
        return str(data["id"])

    def beat(self, hostname: str, version: str = "1.4.2") -> None:
        self.post(f"/systems/{self.ids[hostname]}/heartbeat", {"agent_version": version},
                  self.keys[hostname])

    def report(self, hostname: str, snapshots: list[dict[str, Any]]) -> None:
        response = self.client.put(f"{API}/systems/{self.ids[hostname]}/snapshots",
                                   json={"snapshots": snapshots}, headers=self.keys[hostname])
        if response.status_code != 200:
            raise RuntimeError(f"report {hostname}: {response.status_code} {response.text}")

    def group(self, name: str, hub: str | None, members: dict[str, str], **fields: Any) -> str:
        body: dict[str, Any] = {
            "name": name, **fields,
            "members": [{"system_id": self.ids[h], "root": root} for h, root in members.items()],
        }
        if hub:
            body.update(directional=True, hub_system_id=self.ids[hub])
        self.groups[name] = self.post("/sync-groups", body)["id"]
        return self.groups[name]


def build_demo(client: Any, admin: dict[str, str], set_now: Clock, now: datetime = NOW) -> Fleet:
    """Six hosts (one offline, one never seen), three groups, a lagging host, a conflict."""
    fleet = Fleet(client, admin)
    set_now(now - timedelta(days=15))
    hosts = [("nas-primary", "truenas"), ("backup-east", "debian"), ("backup-west", "debian"),
             ("offsite-vault", "freebsd"), ("laptop", "ubuntu"), ("new-host", "proxmox")]
    for hostname, platform in hosts:
        fleet.register(hostname, platform, ssh_hostname=f"{hostname}.lan", ssh_user="zfs")
    hour, six = timedelta(hours=1), timedelta(hours=6)
    logical = ("data", "data/vm1", "photos")
    source = [s for d in logical for s in series("tank", d, now - hour, 56, six)]
    fleet.report("nas-primary", source)
    fleet.report("backup-east", [
        dict(s, pool="backup", dataset=s["dataset"].replace("tank", "backup", 1)) for s in source])
    behind = [s for d in logical for s in series("backup", d, now - hour - 2 * six, 54, six)]
    fleet.report("backup-west", behind)
    old = [s for d in logical[:2] for s in series("vault", d, now - hour - 8 * six, 48, six)]
    fleet.report("offsite-vault", old)
    home = series("tank", "home", now - hour, 20, six)
    fleet.report("nas-primary", source + home)
    laptop = [dict(s, pool="rpool", dataset="rpool/home") for s in home[:-4]]
    laptop += [snap("rpool", "home", "local-edit-1", now - 9 * hour, own="laptop"),
               snap("rpool", "home", "local-edit-2", now - 3 * hour, own="laptop")]
    fleet.report("laptop", laptop)
    fleet.group("homelab-backups", "nas-primary",
                {"nas-primary": "tank", "backup-east": "backup", "backup-west": "backup",
                 "offsite-vault": "vault"}, datasets=list(logical), sync_interval_seconds=3600,
                description="Primary NAS to the <b>backup</b> boxes & the vault")
    fleet.group("laptop-home", "nas-primary", {"nas-primary": "tank", "laptop": "rpool"},
                datasets=["home"], sync_interval_seconds=900)
    fleet.group("photos-mirror", None, {"nas-primary": "tank", "backup-east": "backup"},
                datasets=["photos"], sync_interval_seconds=86400)
    set_now(now - timedelta(hours=2))
    fleet.beat("offsite-vault", "1.3.0")
    set_now(now - timedelta(seconds=40))
    for hostname in ("nas-primary", "backup-east", "backup-west", "laptop"):
        fleet.beat(hostname)
    set_now(now)
    return fleet


def build_scaled(client: Any, admin: dict[str, str], set_now: Clock, systems: int = 200,
                 groups: int = 50, now: datetime = NOW) -> Fleet:
    """``systems`` hosts with two datasets each; ``groups`` directional groups of 4 members."""
    fleet = Fleet(client, admin)
    set_now(now - timedelta(days=3))
    step = timedelta(hours=6)
    for index in range(systems):
        name = f"host-{index:03d}"
        fleet.register(name)
        lag = index % 3
        fleet.report(name, [s for d in ("data", "vm") for s in
                            series("tank", d, now - step * lag, 12, step)])
    for index in range(groups):
        members = [f"host-{(index * 4 + k) % systems:03d}" for k in range(4)]
        fleet.group(f"group-{index:02d}", members[0], {m: "tank" for m in members},
                    datasets=["data", "vm"])
    set_now(now - timedelta(seconds=30))
    for index in range(0, systems, 2):
        fleet.beat(f"host-{index:03d}")
    set_now(now)
    return fleet


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
