"""agent/config.py: strict parsing, the dataset filter, and the docs generated from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from zfs_sync.agent.config import (
    ConfigError,
    DatasetFilter,
    effective_config,
    load_config,
    parse_config,
    reference_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"server_url": "http://witness:8000", "system_id": "abc-123", "api_key": "secret"}


def conf(**extra: Any) -> dict[str, Any]:
    return {**MINIMAL, **extra}


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(conf())
    assert config.server_url == "http://witness:8000/api/v1"
    assert (config.zfs_path, config.max_parallel, config.holds) == ("zfs", 1, True)
    assert config.datasets == DatasetFilter()


@pytest.mark.parametrize("server", ["http://w:8000/", "http://w:8000/api/v1", "http://w:8000/api/v1/"])
def test_server_url_gets_the_api_prefix_once(server: str) -> None:
    assert parse_config(conf(server_url=server)).server_url == "http://w:8000/api/v1"


def test_unknown_key_is_an_error_with_a_suggestion() -> None:
    expected = r"unknown key\(s\): max_paralel \(did you mean max_parallel\?\)"
    with pytest.raises(ConfigError, match=expected):
        parse_config(conf(max_paralel=2))


@pytest.mark.parametrize("key, value, message", [
    ("server_url", "ftp://w", "http"),
    ("system_id", "../../admin", "id of letters"),
    ("max_parallel", 0, "from 1 to 64"),
    ("max_parallel", True, "integer"),
    ("zfs_path", "zfs; rm -rf /", "zfs_path"),
    ("ssh_options", ["-oProxyCommand=sh"], "Option=value"),
    ("ssh_options", "Compression=no", "list"),
    ("datasets", {"include": ["tank/$(id)"]}, "datasets.include"),
    ("datasets", {"includes": ["tank"]}, "unknown key"),
    ("hold_tag", "-r", "hold_tag"),
    ("bandwidth_limit", "fast", "size"),
    ("log_level", "LOUD", "DEBUG"),
])
def test_bad_values_are_named(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(conf(**{key: value}))


def test_required_keys() -> None:
    with pytest.raises(ConfigError, match="system_id is required"):
        parse_config({"server_url": "http://w", "api_key": "k"})
    with pytest.raises(ConfigError, match="api_key or api_key_file is required"):
        parse_config({"server_url": "http://w", "system_id": "s"})


@pytest.mark.parametrize("value, expected", [
    ("10M", 10 << 20), ("1.5G", int(1.5 * (1 << 30))), (4096, 4096), ("512K/s", 512 << 10),
    (None, None),
])
def test_bandwidth_limit_sizes(value: Any, expected: int | None) -> None:
    assert parse_config(conf(bandwidth_limit=value)).bandwidth_limit == expected


def test_api_key_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("the-key\n")
    path = tmp_path / "agent.yaml"
    path.write_text("server_url: http://w\nsystem_id: s1\napi_key_file: key\n")
    config = load_config(str(path))
    assert config.api_key == "the-key"
    assert effective_config(config)["api_key"] == "***"  # never printed
    assert "the-key" not in repr(config)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_dataset_filter_matches_descendants_and_excludes_win() -> None:
    filt = DatasetFilter(("tank", "backup/host?"), ("tank/tmp",))
    assert filt.matches("tank") and filt.matches("tank/data/vm1")
    assert not filt.matches("tank/tmp") and not filt.matches("tank/tmp/x")
    assert filt.matches("backup/hostA/data") and not filt.matches("backup/other")
    assert not filt.matches("tankx")  # a glob is about whole names, not prefixes
    assert filt.roots() == ("backup", "tank")
    assert DatasetFilter().matches("anything") and DatasetFilter().roots() is None
    assert DatasetFilter(("*/data",)).roots() is None  # no literal head: list everything


def test_docs_carry_the_generated_reference() -> None:
    """docs/agent.md holds `zfs-sync-agent config-check --reference` verbatim."""
    doc = (ROOT / "docs" / "agent.md").read_text()
    assert reference_markdown() in doc
