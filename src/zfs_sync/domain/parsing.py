"""Lenient parsing of the timestamps and sizes that hosts and scripts send.

The operations guide's scripts send what ``zfs list`` and ``awk`` print: creation times in
ZFS's default format (``Thu Nov 26 19:22 2026``), sizes in human form (``88K``) or, under
mawk, in exponent form (``2.14748e+09``). Agents send epoch seconds and exact integers.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

_ZFS_TIME_FORMATS = ("%a %b %d %H:%M %Y", "%a %b %d %H:%M:%S %Y")
_HUMAN_SIZE = re.compile(r"(?i)\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPEZ]?)(?:i?B)?\s*")
_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6, "Z": 7}
MAX_INT64 = 2**63 - 1
# Beyond these bounds an epoch number is certainly a mistake (year 1970..9999).
_MAX_EPOCH = 253402300799


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 (offset or naive=UTC), epoch seconds, or ZFS's ``Thu Nov 26 19:22 2026``."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, bool):
        raise ValueError("a timestamp must be a date-time string or epoch seconds, not a boolean")
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        raise ValueError("a timestamp must be a date-time string or epoch seconds")
    text = value.strip()
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        return _from_epoch(float(text))
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        return as_utc(datetime.fromisoformat(iso))
    except ValueError:
        pass
    collapsed = " ".join(text.split())  # zfs pads single-digit days: "Tue Nov  3 ..."
    for fmt in _ZFS_TIME_FORMATS:
        try:
            return datetime.strptime(collapsed, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ValueError(
        f"cannot read {text[:60]!r} as a timestamp: use ISO 8601 (2026-11-26T19:22:00Z), "
        "epoch seconds, or the zfs list format (Thu Nov 26 19:22 2026)"
    )


def _from_epoch(seconds: float) -> datetime:
    if not math.isfinite(seconds) or not 0 <= seconds <= _MAX_EPOCH:
        raise ValueError("epoch seconds out of range")
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def parse_size(value: object) -> int | None:
    """Bytes from an integer, a float (``2.14748e+09``) or a ZFS human size (``1.5G``).

    ``-`` and empty strings (what zfs prints for "not applicable") give None.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes, not a boolean")
    if isinstance(value, int):
        return _check_size(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a size must be a finite number")
        return _check_size(round(value))
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a size such as 88K or 1.5G")
    text = value.strip()
    if text in ("", "-", "none"):
        return None
    try:
        return parse_size(int(text))
    except ValueError:
        pass
    match = _HUMAN_SIZE.fullmatch(text)
    if match:
        number, unit = match.groups()
        return _check_size(round(float(number) * 1024 ** _UNITS[unit.upper()]))
    try:
        return parse_size(float(text))
    except ValueError:
        raise ValueError(
            f"cannot read {text[:40]!r} as a size: use bytes (1024), "
            "exponent form (2.14748e+09) or a ZFS size (88K, 1.5G)"
        ) from None


def _check_size(value: int) -> int:
    if not 0 <= value <= MAX_INT64:
        raise ValueError("a size must be between 0 and 2^63-1 bytes")
    return value


def parse_guid(value: object) -> int | None:
    """ZFS guids are unsigned 64-bit; JSON carries them as decimal strings or numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a guid must be an unsigned 64-bit integer")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError("a guid must be an unsigned 64-bit integer in decimal")
        value = int(value.strip())
    if not isinstance(value, int) or not 0 <= value < 2**64:
        raise ValueError("a guid must be an unsigned 64-bit integer")
    return value
