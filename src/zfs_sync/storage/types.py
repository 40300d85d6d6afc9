"""Column types that keep values exact on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect
from sqlalchemy.types import TypeDecorator

_TWO_64 = 2**64
_TWO_63 = 2**63


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no zones), always returned as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc)


class Guid(TypeDecorator[int]):
    """An unsigned 64-bit ZFS guid kept losslessly in a signed BIGINT (two's complement)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return value - _TWO_64 if value >= _TWO_63 else value

    def process_result_value(self, value: int | None, dialect: Dialect) -> int | None:
        return guid_from_db(value)


def guid_to_db(value: int | None) -> int | None:
    """The stored form of a guid, for bulk statements that bypass the type."""
    if value is None:
        return None
    return value - _TWO_64 if value >= _TWO_63 else value


def guid_from_db(value: int | None) -> int | None:
    """A guid as stored (signed) back to ZFS's unsigned value."""
    if value is None:
        return None
    return value + _TWO_64 if value < 0 else value
