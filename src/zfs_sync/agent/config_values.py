"""Parsers for the values of the agent's config keys (``config.py`` holds the table).

Each takes (key, raw YAML value) and returns the value or raises ``ConfigError`` naming the
key. Values that can reach a command line go through ``zfs_sync.domain.names``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zfs_sync.domain import names


class ConfigError(ValueError):
    """The config file is missing, unreadable or wrong; the message says where and why."""


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SSH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*=[^\x00-\x1f\x7f]+")
_HOLD_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?(?:/s)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class DatasetFilter:
    """Which local datasets the agent reports and may receive into.

    A pattern is a shell glob over the full dataset name; a dataset matches when it or one of
    its ancestors matches, so ``tank`` covers the whole pool and ``tank/vm*`` covers
    ``tank/vm1/disk0``. Empty ``include`` = every dataset. ``exclude`` wins over ``include``.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def matches(self, dataset: str) -> bool:
        lineage = _lineage(dataset)
        if self.include and not any(_any_match(lineage, p) for p in self.include):
            return False
        return not any(_any_match(lineage, p) for p in self.exclude)

    def roots(self) -> tuple[str, ...] | None:
        """Datasets to list recursively (None = all): the literal head of each include."""
        if not self.include:
            return None
        heads: list[str] = []
        for pattern in self.include:
            head = _literal_head(pattern)
            if head is None:
                return None
            heads.append(head)
        unique = sorted(set(heads))
        return tuple(h for h in unique if not any(h.startswith(o + "/") for o in unique))


def _lineage(dataset: str) -> list[str]:
    parts = dataset.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _any_match(lineage: list[str], pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in lineage)


def _literal_head(pattern: str) -> str | None:
    head: list[str] = []
    for component in pattern.split("/"):
        if any(c in component for c in "*?["):
            break
        head.append(component)
    return "/".join(head) or None


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or value == "":
        raise ConfigError(f"{key} must be a non-empty string")
    return value


def _int(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key} must be an integer from {low} to {high}, not {value!r}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str, Any], float]:
    def parse(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, not {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{key} must be between {low} and {high}")
        return float(value)

    return parse


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    return value


def _server_url(key: str, value: Any) -> str:
    url = _str(key, value).rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise ConfigError(f"{key} must be an http:// or https:// URL, not {value!r}")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


def _identifier(key: str, value: Any) -> str:
    text = _str(key, value)
    if not _ID.fullmatch(text):
        raise ConfigError(f"{key} must be an id of letters, digits, '-' and '_' (as registered)")
    return text


def _command(key: str, value: Any) -> str:
    try:
        return names.validate_command_path(_str(key, value))
    except names.InvalidName as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _path(key: str, value: Any) -> str:
    text = _str(key, value)
    if "\x00" in text or text.startswith("-"):
        raise ConfigError(f"{key} must be a file path")
    return text


def _ssh_options(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of 'Option=value' strings")
    for item in value:
        if not isinstance(item, str) or not _SSH_OPTION.fullmatch(item):
            raise ConfigError(f"{key}: {item!r} is not an 'Option=value' ssh option")
    return tuple(value)


def _globs(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key} must be a list of dataset globs")
    for pattern in value:
        try:
            names.validate_dataset_glob(pattern)
        except names.InvalidName as exc:
            raise ConfigError(f"{key}: {pattern!r}: {exc}") from None
    return tuple(value)


def _dataset_filter(key: str, value: Any) -> DatasetFilter:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping with 'include' and/or 'exclude' lists")
    unknown = set(value) - {"include", "exclude"}
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    include = _globs(f"{key}.include", value.get("include") or [])
    exclude = _globs(f"{key}.exclude", value.get("exclude") or [])
    return DatasetFilter(include, exclude)


def parse_size(key: str, value: Any) -> int | None:
    """Bytes per second: ``10485760``, ``10M``, ``1.5G`` (powers of 1024); null = no limit."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{key} must be a positive size such as 10M or 1048576, not {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _hold_tag(key: str, value: Any) -> str:
    text = _str(key, value)
    if not _HOLD_TAG.fullmatch(text) or text.startswith("-"):
        raise ConfigError(f"{key} may contain only letters, digits, '_', '.', ':' and '-'")
    return text


def _log_level(key: str, value: Any) -> str:
    text = _str(key, value).upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{key} must be DEBUG, INFO, WARNING or ERROR")
    return text
