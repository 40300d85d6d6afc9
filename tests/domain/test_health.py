from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from zfs_sync.domain.health import HealthStatus, system_health, timeout_for_interval

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("age", "status"),
    [(0, "online"), (299.999, "online"), (300, "online"), (300.001, "offline"), (86400, "offline")],
)
def test_boundary(age: float, status: str) -> None:
    health = system_health(NOW - timedelta(seconds=age), 300, NOW)
    assert health.status == HealthStatus(status)
    assert health.age_seconds == int(age)


def test_never_seen_is_unknown() -> None:
    assert system_health(None, 300, NOW).status is HealthStatus.UNKNOWN
    assert system_health(None, 300, NOW).age_seconds is None


def test_clock_skew_never_gives_negative_age() -> None:
    health = system_health(NOW + timedelta(seconds=5), 300, NOW)
    assert (health.status, health.age_seconds) == (HealthStatus.ONLINE, 0)


def test_timeout_from_agent_interval_tolerates_one_missed_beat() -> None:
    assert timeout_for_interval(30) == 90
    assert timeout_for_interval(900) == 1800
