"""No log line contains a key or token (DESIGN.md §6), even at DEBUG, even when they fail.

A real ``zfs-sync serve`` runs at ``ZFS_SYNC_LOG_LEVEL=DEBUG`` with a log file. The test drives
a whole workflow over HTTP, collects every credential issued or presented (system keys, their
rotations, the admin token before and after ``zfs-sync admin rotate-token``, wrong guesses,
the dashboard's session cookie and CSRF token), then searches all the witness wrote (the log
file, stdout and stderr) for each of them and for their parts.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.live import ZFS_SYNC, live_witness

LIMIT = 5
ATTACKER = "198.51.100.66"  # via X-Forwarded-For from the trusted loopback "proxy"
KEY = re.compile(r"zs_[0-9a-f]{16}_[A-Za-z0-9_-]+")
SNAPSHOTS = {"snapshots": [{"name": "daily-1", "pool": "tank", "dataset": "tank/data",
                            "timestamp": "2026-11-26T10:00:00Z", "guid": "42"}]}


def _forms(secret: str) -> set[str]:
    """The secret, and the parts of a ``zs_<key id>_<secret>`` key that could leak alone."""
    forms = {secret}
    if secret.startswith("zs_"):
        body = secret.removeprefix("zs_")
        forms |= {body, body.partition("_")[2]}
    return {form for form in forms if len(form) >= 16}


def _register(api: httpx.Client, token: str, hostname: str) -> tuple[str, str]:
    response = api.post("/systems", json={"hostname": hostname, "platform": "linux"},
                        headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["api_key"]


def _sign_in_and_rotate(url: str, token: str, system_id: str, seen: list[str]) -> str:
    """Sign in to the dashboard, rotate a key there; return the key the page shows."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        wrong = browser.post("/login", data={"token": "not-the-admin-token-" + "x" * 12})
        seen.append("not-the-admin-token-" + "x" * 12)
        assert wrong.status_code == 401
        signed_in = browser.post("/login", data={"token": token})
        assert signed_in.status_code == 303, signed_in.text
        seen.append(signed_in.cookies["zfs_sync_session"])
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/").text)
        assert csrf is not None
        seen.append(csrf.group(1))
        page = browser.post(f"/systems/{system_id}/rotate-key", data={"csrf": csrf.group(1)})
        assert page.status_code == 200, page.text
        found = KEY.search(page.text)
        assert found is not None
        return found.group(0)


def _guess_until_locked(api: httpx.Client, seen: list[str]) -> None:
    forwarded = {"X-Forwarded-For": ATTACKER}
    for attempt in range(LIMIT):
        guess = f"zs_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
        header = ({"X-API-Key": guess} if attempt % 2 else {"Authorization": f"Bearer {guess}"})
        seen.append(guess)
        assert api.get("/systems", headers={**header, **forwarded}).status_code == 401
    guess = secrets.token_urlsafe(32)
    seen.append(guess)
    locked = api.get("/systems", headers={"X-API-Key": guess, **forwarded})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def _rotate_admin_token(data_dir: Path, database_url: str) -> tuple[str, str]:
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")},
               "ZFS_SYNC_DATA_DIR": str(data_dir), "ZFS_SYNC_DATABASE_URL": database_url}
    result = subprocess.run([ZFS_SYNC, "admin", "rotate-token"], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return (data_dir / "admin-token").read_text().strip(), result.stdout + result.stderr


def _workflow(url: str, data_dir: Path, database_url: str) -> tuple[list[str], str]:
    """Every credential issued or presented, and what the CLI printed."""
    token = (data_dir / "admin-token").read_text().strip()
    seen = [token]
    with httpx.Client(base_url=f"{url}/api/v1", timeout=30) as api:
        alpha, alpha_key = _register(api, token, "alpha")
        beta, beta_key = _register(api, token, "beta")
        seen += [alpha_key, beta_key]
        assert api.post(f"/systems/{alpha}/heartbeat",
                        headers={"X-API-Key": alpha_key}).status_code == 200
        assert api.post(f"/systems/{beta}/heartbeat",
                        headers={"Authorization": f"Bearer {beta_key}"}).status_code == 200
        assert api.put(f"/systems/{alpha}/snapshots", json=SNAPSHOTS,
                       headers={"X-API-Key": alpha_key}).status_code == 200
        rotated = api.post(f"/systems/{alpha}/api-key/rotate", headers={"X-API-Key": alpha_key})
        assert rotated.status_code == 200
        alpha_new = rotated.json()["api_key"]
        seen.append(alpha_new)
        assert api.get("/systems", headers={"X-API-Key": alpha_key}).status_code == 401
        assert api.post(f"/systems/{alpha}/heartbeat",
                        headers={"X-API-Key": alpha_new}).status_code == 200
        assert api.delete(f"/systems/{beta}/api-key",
                          headers={"X-API-Key": beta_key}).status_code == 204
        assert api.get("/systems", headers={"X-API-Key": beta_key}).status_code == 401
        both = {"X-API-Key": token, "Authorization": f"Bearer {token}"}
        assert api.get("/systems", headers=both).status_code == 200
        mixed = {"X-API-Key": token, "Authorization": f"Bearer {alpha_new}"}
        assert api.get("/systems", headers=mixed).status_code == 400
        seen.append(_sign_in_and_rotate(url, token, beta, seen))
        _guess_until_locked(api, seen)
        new_token, printed = _rotate_admin_token(data_dir, database_url)
        seen.append(new_token)
        assert api.get("/systems", headers={"X-API-Key": token}).status_code == 401
        assert api.get("/systems", headers={"Authorization": f"Bearer {new_token}"},
                       ).status_code == 200
        rotated = api.post(f"/systems/{beta}/api-key/rotate", headers={"X-API-Key": new_token})
        assert rotated.status_code == 200
        seen.append(rotated.json()["api_key"])
    return seen, printed


def test_no_key_or_token_reaches_the_log(tmp_path: Path, database_url: str) -> None:
    data_dir, log_file = tmp_path / "data", tmp_path / "logs" / "zfs-sync.log"
    data_dir.mkdir()
    env: dict[str, Any] = {
        "ZFS_SYNC_LOG_LEVEL": "DEBUG", "ZFS_SYNC_LOG_FILE": str(log_file),
        "ZFS_SYNC_AUTH_FAILURES_PER_MINUTE": str(LIMIT), "ZFS_SYNC_TRUSTED_PROXIES": "127.0.0.1",
    }
    with live_witness(data_dir, database_url, **env) as url:
        seen, printed = _workflow(url, data_dir, database_url)
    output = log_file.read_text() + (data_dir / "witness.log").read_text() + printed
    assert len(seen) >= 15 and len(set(seen)) == len(seen)
    leaked = sorted(form for secret in seen for form in _forms(secret) if form in output)
    assert leaked == []
    assert not KEY.search(output)
    # The log is on and at DEBUG: failures, the lockout and the refusals are all there.
    assert output.count("auth failure: GET /api/v1/systems from 127.0.0.1 answered 401") >= 3
    assert "auth failure: POST /login from 127.0.0.1 answered 401" in output
    assert f"locking out {ATTACKER} after {LIMIT} failed authentications" in output
    assert f"DEBUG zfs_sync.api.ratelimit: refused a credential from {ATTACKER}" in output
