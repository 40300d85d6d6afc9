"""The README's commands are run as written, so they cannot go stale."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from tests.live import live_witness

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _bash_blocks(section: str) -> list[str]:
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.S)


def test_readme_starts_with_serve_and_test_commands() -> None:
    serve, test = _bash_blocks("Two commands")[:2]
    assert serve.strip().endswith(".venv/bin/zfs-sync serve")
    assert "pip install '.[server]'" in serve
    assert test.strip() == "scripts/test"
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_serve_command_answers_health(tmp_path: Path) -> None:
    with live_witness(tmp_path) as url:
        body = httpx.get(f"{url}/api/v1/health").json()
    assert body["status"] == "healthy"
    assert (tmp_path / "zfs_sync.db").exists()
    assert (tmp_path / "admin-token").stat().st_mode & 0o777 == 0o600


def test_walkthrough_runs_verbatim(tmp_path: Path, database_url: str) -> None:
    script = "\n".join(_bash_blocks("Five-minute walkthrough"))
    with live_witness(tmp_path, database_url) as url:
        token = (tmp_path / "admin-token").read_text().strip()
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "URL": f"{url}/api/v1", "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr + result.stdout
        health = httpx.get(f"{url}/api/v1/systems/health/all").json()
    assert sorted(s["status"] for s in health["systems"]) == ["online", "online"]
    out = result.stdout
    assert '"hostname": "alpha"' in out and '"online"' in out
    assert '{"dataset":"backup/data","missing":["daily-2026-11-26"]}' in out  # beta's gap
    assert ("incremental_send data: zfs rollback backup/data@daily-2026-11-25 && "
            "ssh -n -o BatchMode=yes -p 22 alpha.example.net "
            "'zfs send -I tank/data@daily-2026-11-25 tank/data@daily-2026-11-26' "
            "| zfs receive -u backup/data") in out
    assert '{"dataset":"data","status":"in_sync"}' in out
    assert '{"in_sync_count":1,"out_of_sync_count":0}' in out
    assert "sync.in_sync" in out and "group.created" in out
