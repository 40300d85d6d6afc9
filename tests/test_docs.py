"""Docs must name every setting and every CLI command (a missing one fails here)."""

from __future__ import annotations

from pathlib import Path

import click

from zfs_sync.cli import main
from zfs_sync.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields
               if f"`{ENV_PREFIX}{name.upper()}`" not in doc]
    assert missing == []


def _commands(group: click.Group, prefix: str = "zfs-sync") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def test_every_cli_command_is_documented() -> None:
    text = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md")
    )
    missing = [command for command in _commands(main) if command not in text]
    assert missing == []


def test_every_route_is_in_the_api_doc(tmp_path: Path) -> None:
    import re

    from zfs_sync.api.app import create_app
    from zfs_sync.config import load_settings
    from zfs_sync.storage.db import Database

    doc = (ROOT / "docs" / "api.md").read_text()
    db = Database(f"sqlite:///{tmp_path}/api.db")
    db.upgrade()
    app = create_app(load_settings(env={}, admin_token="x" * 20, data_dir=str(tmp_path)), db=db)
    paths = {re.sub(r"^/api/v1", "", p) for p in app.openapi()["paths"]}
    documented = {re.sub(r"\{[^}]+\}", "{}", p) for p in re.findall(r"`(?:GET|POST|PUT|DELETE) ([^`? ]+)", doc)}
    documented |= {p.replace("/all", "/online") for p in documented} | {p.replace("/all", "/offline") for p in documented}
    missing = sorted(p for p in paths if re.sub(r"\{[^}]+\}", "{}", p) not in documented)
    assert missing == []
