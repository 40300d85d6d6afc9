"""A real witness process on 127.0.0.1 for tests that talk to it over the network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ZFS_SYNC = str(Path(sys.executable).parent / "zfs-sync")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_witness(data_dir: Path, database_url: str | None = None, **env: str) -> Iterator[str]:
    """Run ``zfs-sync serve`` on a free loopback port; yield its base URL."""
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")},
        "ZFS_SYNC_DATA_DIR": str(data_dir),
        "ZFS_SYNC_HOST": "127.0.0.1",
        "ZFS_SYNC_PORT": str(port),
        **env,
    }
    if database_url:
        environ["ZFS_SYNC_DATABASE_URL"] = database_url
    log = open(data_dir / "witness.log", "wb") if data_dir.exists() else subprocess.DEVNULL
    process = subprocess.Popen([ZFS_SYNC, "serve"], env=environ, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log is not subprocess.DEVNULL:
            log.close()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"zfs-sync serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("zfs-sync serve did not become healthy in time")
