"""``zfs-sync serve`` as a real process on 127.0.0.1, with a generous start-up timeout.

``serve`` runs one for a ``with`` block; ``WitnessProcess`` is one that a test stops (SIGTERM),
kills (SIGKILL) and starts again on the same data directory and database.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import ZFS_SYNC, _wait_healthy, free_port


@contextmanager
def serve(data_dir: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")},
        "ZFS_SYNC_DATA_DIR": str(data_dir),
        "ZFS_SYNC_HOST": "127.0.0.1",
        "ZFS_SYNC_PORT": str(port),
        **env,
    }
    with open(data_dir / "witness.log", "wb") as log:
        process = subprocess.Popen([ZFS_SYNC, "serve"], env=environ, stdout=log, stderr=log)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}", process, timeout=120)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


class WitnessProcess:
    """A ``zfs-sync serve`` (or ``zfs-sync monitor``) process that tests stop, kill and restart.

    ``start`` runs it on the same data directory (and database) every time; ``stop`` sends
    SIGTERM, ``kill`` SIGKILL (no shutdown code runs: as when a machine loses power).
    """

    def __init__(self, data_dir: Path, command: str = "serve", **env: str) -> None:
        self.data_dir, self.command, self.extra_env = data_dir, command, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"witness-{self.port}.log"

    def start(self) -> None:
        assert self.process is None, "already running"
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")},
            "ZFS_SYNC_DATA_DIR": str(self.data_dir),
            "ZFS_SYNC_HOST": "127.0.0.1",
            "ZFS_SYNC_PORT": str(self.port),
            **self.extra_env,
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([ZFS_SYNC, self.command], env=environ,
                                            stdout=log, stderr=log)
        if self.command == "serve":
            _wait_healthy(self.url, self.process, timeout=120)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        return self._end(self._process().terminate)

    def kill(self) -> int:
        """SIGKILL and wait."""
        return self._end(self._process().kill)

    def _process(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "not running"
        return self.process

    def _end(self, signal_it: Callable[[], None]) -> int:
        process = self._process()
        signal_it()
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=20)
        self.process = None
        return code

    def close(self) -> None:
        if self.process is not None:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
