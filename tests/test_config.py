from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from zfs_sync.cli import main
from zfs_sync.config import ConfigError, load_settings


def test_defaults() -> None:
    settings = load_settings(env={})
    assert (settings.host, settings.port, settings.public_read) == ("0.0.0.0", 8000, True)
    assert settings.open_registration is False and settings.open_admin is False
    assert settings.heartbeat_timeout_seconds == 300
    assert settings.max_body_bytes == 64 * 1024 * 1024


def test_file_then_env_then_secret_file(tmp_path: Path) -> None:
    config = tmp_path / "zfs_sync.yaml"
    config.write_text("port: 9000\nheartbeat_timeout_seconds: 60\nadmin_token: from-the-yaml-file\n")
    secret = tmp_path / "token"
    secret.write_text("from-the-secret-file\n")
    env = {"ZFS_SYNC_CONFIG": str(config), "ZFS_SYNC_PORT": "9100"}
    settings = load_settings(env=env)
    assert (settings.port, settings.heartbeat_timeout_seconds) == (9100, 60)
    assert settings.admin_token == "from-the-yaml-file"
    env["ZFS_SYNC_ADMIN_TOKEN"] = "from-the-environment"
    assert load_settings(env=env).admin_token == "from-the-environment"
    env["ZFS_SYNC_ADMIN_TOKEN_FILE"] = str(secret)
    assert load_settings(env=env).admin_token == "from-the-secret-file"


def test_explicit_config_file_wins_over_env_path(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("port: 1111\n")
    two.write_text("port: 2222\n")
    assert load_settings(one, env={"ZFS_SYNC_CONFIG": str(two)}).port == 1111


def test_unknown_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "zfs_sync.yaml"
    config.write_text("port: 8000\nheartbeat_timout_seconds: 5\n")
    with pytest.raises(ConfigError, match="heartbeat_timout_seconds"):
        load_settings(config, env={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        load_settings(env={"ZFS_SYNC_PORT": "eighty"})


def test_lists_from_env() -> None:
    settings = load_settings(
        env={
            "ZFS_SYNC_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
            "ZFS_SYNC_WEBHOOKS": "- url: http://127.0.0.1:9/hook\n  events: [system.offline]\n",
        }
    )
    assert settings.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert settings.webhooks[0].events == ["system.offline"]


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {
        "ZFS_SYNC_ADMIN_TOKEN": "a-very-secret-admin-token",
        "ZFS_SYNC_DATABASE_URL": "postgresql://zfs:hunter2secret@db/zfs_sync",
    }
    result = CliRunner().invoke(main, ["config", "show"], env=env)
    assert result.exit_code == 0, result.output
    assert "a-very-secret-admin-token" not in result.output
    assert "hunter2secret" not in result.output
    assert "postgresql://zfs:********@db/zfs_sync" in result.output


def test_cli_reports_config_errors_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("bogus: 1\n")
    result = CliRunner().invoke(main, ["--config", str(config), "config", "show"])
    assert result.exit_code == 1
    assert "unknown setting 'bogus'" in result.output
