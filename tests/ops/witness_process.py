"""``zfs-sync serve`` as a real process on 127.0.0.1, with a generous start-up timeout."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
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
