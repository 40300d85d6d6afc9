"""Heartbeat health, derived when read from ``last_seen`` and a timeout (never stored)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

DEFAULT_TIMEOUT_SECONDS = 300
MIN_HEARTBEAT_GRACE_SECONDS = 60


class HealthStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    age_seconds: int | None


def system_health(last_seen: datetime | None, timeout_seconds: int, now: datetime) -> Health:
    """Online while the last heartbeat is at most ``timeout_seconds`` old."""
    if last_seen is None:
        return Health(HealthStatus.UNKNOWN, None)
    age = (now - last_seen).total_seconds()
    status = HealthStatus.ONLINE if age <= timeout_seconds else HealthStatus.OFFLINE
    return Health(status, max(0, int(age)))


def timeout_for_interval(interval_seconds: int) -> int:
    """The timeout an agent's heartbeat interval implies: one missed beat is tolerated."""
    return interval_seconds + max(interval_seconds, MIN_HEARTBEAT_GRACE_SECONDS)
