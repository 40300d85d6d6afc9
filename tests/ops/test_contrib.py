"""contrib/witness: checked with parsers only (no Docker engine or systemd on these machines)."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "witness"
DATA = "/var/lib/zfs-sync"


def instructions(name: str) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(CONTRIB / name))
    return [
        (i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"
    ]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    steps = instructions("Dockerfile")
    kinds = [kind for kind, _ in steps]
    assert kinds[0] == "FROM"
    users = [value for kind, value in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    health = [value for kind, value in steps if kind == "HEALTHCHECK"]
    assert len(health) == 1 and "/api/v1/health" in health[0]
    assert ("EXPOSE", "8000") in steps
    assert any(kind == "VOLUME" and DATA in value for kind, value in steps)
    assert ("CMD", '["serve"]') in steps and ("ENTRYPOINT", '["zfs-sync"]') in steps
    assert any(kind == "RUN" and ".[server]" in value for kind, value in steps)


def compose(name: str) -> dict:
    data = yaml.safe_load((CONTRIB / name).read_text())
    assert set(data) <= {"services", "volumes", "secrets", "networks", "configs"}
    for service in data["services"].values():
        assert "image" in service or "build" in service
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in data.get("volumes", {})
        for secret in service.get("secrets", []):
            assert secret in data.get("secrets", {})
        for dependency in service.get("depends_on", {}):
            assert dependency in data["services"]
    return data


def test_sqlite_compose_keeps_the_database_on_a_volume() -> None:
    service = compose("docker-compose.yml")["services"]["zfs-sync"]
    assert any(v.endswith(":" + DATA) for v in service["volumes"])
    assert service["build"]["dockerfile"] == "contrib/witness/Dockerfile"
    assert (CONTRIB / service["build"]["context"] / "pyproject.toml").resolve().exists()
    assert "8000:8000" in service["ports"]


def test_postgres_compose_points_the_witness_at_the_database() -> None:
    data = compose("docker-compose.postgres.yml")
    witness = data["services"]["zfs-sync"]
    assert "ZFS_SYNC_DATABASE_URL_FILE" in witness["environment"]
    assert witness["depends_on"]["db"]["condition"] == "service_healthy"
    assert "healthcheck" in data["services"]["db"]


def test_systemd_unit() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)  # Environment= repeats
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(CONTRIB / "zfs-sync.service")
    service = parser["Service"]
    assert service["ExecStart"].endswith("zfs-sync serve")
    assert service["User"] != "root" and service["Restart"] == "on-failure"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_grafana_dashboard_uses_series_the_witness_exports() -> None:
    dashboard = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    exported = set(
        re.findall(
            r'"(zfs_sync_[a-z_]+)"',
            (Path(__file__).resolve().parents[2] / "src/zfs_sync/metrics.py").read_text(),
        )
    )
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = re.findall(r"zfs_sync_[a-z_]+", target["expr"])
            assert names
            for name in names:
                base = re.sub(r"_(bucket|count|sum|total)$", "", name)
                assert base in exported, name
