"""``zfs-sync serve`` as a real process: the admin-token file check and whose address counts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.live import ZFS_SYNC, free_port, live_witness


def test_serve_refuses_a_generated_token_file_readable_by_others(tmp_path: Path) -> None:
    with live_witness(tmp_path) as url:  # the first start generates <data dir>/admin-token
        assert httpx.get(f"{url}/api/v1/health").status_code == 200
    token_file = tmp_path / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token_file.chmod(0o644)
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")},
               "ZFS_SYNC_DATA_DIR": str(tmp_path), "ZFS_SYNC_HOST": "127.0.0.1",
               "ZFS_SYNC_PORT": str(free_port())}
    result = subprocess.run([ZFS_SYNC, "serve"], env=environ, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert f"refusing to start: {token_file} is readable by other users (mode 644)" in (
        result.stderr)
    assert f"chmod 600 {token_file}" in result.stderr
    token = token_file.read_text().strip()
    assert token not in result.stdout + result.stderr


def test_forwarded_for_counts_only_from_trusted_proxies(tmp_path: Path) -> None:
    """uvicorn alone would believe X-Forwarded-For from loopback; the witness must not."""
    bad = {"X-API-Key": "zs_0123456789abcdef_wrong"}
    for proxies, locked_out in (("", "127.0.0.1"), ("127.0.0.1", "198.51.100.9")):
        data_dir = tmp_path / (proxies or "none")
        data_dir.mkdir()
        env = {"ZFS_SYNC_AUTH_FAILURES_PER_MINUTE": "2", "ZFS_SYNC_TRUSTED_PROXIES": proxies,
               "ZFS_SYNC_ADMIN_TOKEN": "serve-security-admin-token"}
        with live_witness(data_dir, **env) as url:
            admin = {"X-API-Key": "serve-security-admin-token"}
            for n in range(2):
                forwarded = {"X-Forwarded-For": f"198.51.100.9, 203.0.113.{n}"
                             if not proxies else "198.51.100.9"}
                assert httpx.get(f"{url}/api/v1/systems",
                                 headers={**bad, **forwarded}).status_code == 401
            other = httpx.get(f"{url}/api/v1/systems",
                              headers={**admin, "X-Forwarded-For": "198.51.100.10"})
            direct = httpx.get(f"{url}/api/v1/systems", headers=admin)
        log = (data_dir / "witness.log").read_text()
        assert f"locking out {locked_out} after 2 failed" in log
        if proxies:  # the proxy's other clients and the proxy itself are not locked out
            assert other.status_code == 200 and direct.status_code == 200
        else:  # the header is ignored: the loopback peer itself is locked out
            assert other.status_code == 429 and direct.status_code == 429
