"""Brute-force protection: failed authentications per client address (api/ratelimit.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN, Witness
from zfs_sync.api.ratelimit import (
    AuthFailureGuard,
    FailureLimiter,
    client_address,
    trusted_networks,
)
from zfs_sync.config import ConfigError, load_settings

BAD = {"X-API-Key": "zs_0123456789abcdef_not-a-real-secret"}


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the limiter on its own -----------------------------------------------------------------


def test_locked_only_after_limit_failures_within_the_window() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, clock=clock)
    for offset in (0, 10):
        clock.now = 1000 + offset
        limiter.record_failure("1.2.3.4")
        assert limiter.retry_after("1.2.3.4") is None
    clock.now = 1020
    limiter.record_failure("1.2.3.4")
    assert limiter.retry_after("1.2.3.4") == 40  # the failure at 1000 leaves at 1060
    assert limiter.retry_after("5.6.7.8") is None  # other addresses are not affected


def test_window_edges() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(2, clock=clock)
    limiter.record_failure("a")
    clock.now += 30
    limiter.record_failure("a")
    clock.now = 1059.5
    assert limiter.retry_after("a") == 1  # just before: still locked, rounded up
    clock.now = 1060
    assert limiter.retry_after("a") is None  # at 60 s the oldest failure has left
    limiter.record_failure("a")
    assert limiter.retry_after("a") == 30  # locked again until the failure at 1030 leaves
    clock.now = 1090.001
    assert limiter.retry_after("a") is None


def test_failures_older_than_the_window_do_not_add_up() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, clock=clock)
    for _ in range(10):
        limiter.record_failure("a")
        limiter.record_failure("a")
        clock.now += 61
    assert limiter.retry_after("a") is None


def test_a_lockout_is_announced_once() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(2, clock=clock)
    assert limiter.record_failure("a") is False
    clock.now += 30
    assert limiter.record_failure("a") is True
    # A client that keeps guessing as slots free up stays in the same lockout.
    for _ in range(5):
        clock.now += 30
        assert limiter.retry_after("a") is None
        assert limiter.record_failure("a") is False
        assert limiter.retry_after("a") is not None
    clock.now += 61  # quiet for a whole window: the next lockout is a new one
    assert [limiter.record_failure("a") for _ in range(2)] == [False, True]


def test_stale_addresses_are_evicted() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(5, clock=clock)
    for n in range(1000):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 1000
    clock.now += 60
    limiter.record_failure("192.0.2.1")
    assert len(limiter) == 1


def test_memory_is_bounded_by_max_addresses() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(2, clock=clock, max_addresses=100)
    limiter.record_failure("locked")
    limiter.record_failure("locked")
    for n in range(99):
        limiter.record_failure(f"10.1.0.{n}")
    assert len(limiter) == 100 and limiter.retry_after("locked") is not None
    limiter.record_failure("10.2.0.1")  # the least recently failing address goes first
    assert len(limiter) == 100 and limiter.retry_after("locked") is None


def test_concurrent_failures_are_counted_safely() -> None:
    limiter = FailureLimiter(1000, clock=FakeClock())
    announced: list[bool] = []

    def hammer(worker: int) -> None:
        for n in range(500):
            announced.append(limiter.record_failure("shared"))
            limiter.record_failure(f"own-{worker}-{n % 50}")
            limiter.retry_after("shared")

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert announced.count(True) == 1  # exactly the 1000th failure locked it
    assert limiter.retry_after("shared") == 60
    assert len(limiter) == 1 + 8 * 50


# -- which address a request counts against --------------------------------------------------

PROXIES = trusted_networks(["10.0.0.1", "192.168.0.0/16", "fd00::/8"])


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("203.0.113.7", [], "203.0.113.7"),
    ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),  # untrusted peer: header ignored
    ("10.0.0.2", ["198.51.100.1"], "10.0.0.2"),  # a neighbour of the proxy is not a proxy
    ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.1", [], "10.0.0.1"),
    ("10.0.0.1", ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),  # left part is client-made
    ("10.0.0.1", ["1.1.1.1, 198.51.100.1, 192.168.4.4"], "198.51.100.1"),  # proxy chain
    ("10.0.0.1", ["1.1.1.1", "198.51.100.1"], "198.51.100.1"),  # two headers, in order
    ("10.0.0.1", ["192.168.1.1, 192.168.2.2"], "192.168.1.1"),  # all proxies: left-most
    ("10.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
    ("10.0.0.1", ["[2001:db8::1]:4711"], "2001:db8::1"),
    ("fd00::5", ["2001:db8::7"], "2001:db8::7"),
    ("10.0.0.1", ["garbage"], "garbage"),
    ("testclient", ["198.51.100.1"], "testclient"),
])
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_trusted_proxies_setting_is_validated() -> None:
    settings = load_settings(env={"ZFS_SYNC_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, ::1"})
    assert settings.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1"]
    with pytest.raises(ConfigError, match="not an IP address or CIDR network"):
        load_settings(env={"ZFS_SYNC_TRUSTED_PROXIES": "proxy.example.net"})


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def peers(make_witness: Callable[..., Witness]) -> Iterator[Callable[..., Any]]:
    """``peers(witness, "1.2.3.4")``: a client of the same app from another socket peer."""
    clients: list[TestClient] = []

    def make(witness: Witness, host: str) -> TestClient:
        client = TestClient(witness.client.app, client=(host, 40000),
                            raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _pin_clock(witness: Witness) -> FakeClock:
    app: Any = witness.client.app
    guard: AuthFailureGuard = app.state.auth_guard
    clock = FakeClock()
    app.state.auth_guard = AuthFailureGuard(FailureLimiter(guard.limiter.limit, clock=clock),
                                            guard.proxies)
    return clock


def _fail(client: TestClient, times: int, headers: dict[str, str] = BAD) -> None:
    for _ in range(times):
        assert client.get("/api/v1/systems", headers=headers).status_code == 401


def test_lockout_after_the_limit_with_retry_after(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(auth_failures_per_minute=3)
    clock = _pin_clock(witness)
    _fail(witness.client, 3)
    clock.now += 15
    refused = witness.client.get("/api/v1/systems", headers=BAD)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "E_TOO_MANY_AUTH_FAILURES"
    assert body["detail"] and "ZFS_SYNC_AUTH_FAILURES_PER_MINUTE" in body["hint"]
    assert refused.headers["Retry-After"] == "45"
    # A valid credential is refused as well, in either header, on any route...
    for headers in (ADMIN, {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        again = witness.client.post("/api/v1/systems", headers=headers,
                                    json={"hostname": "h", "platform": "linux"})
        assert again.status_code == 429 and again.headers["Retry-After"] == "45"
    # ...while requests without a credential are served as usual.
    assert witness.client.get("/api/v1/systems").status_code == 200


def test_the_window_frees(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(auth_failures_per_minute=2)
    clock = _pin_clock(witness)
    _fail(witness.client, 1)
    clock.now += 20
    _fail(witness.client, 1)
    clock.now += 39
    assert witness.client.get("/api/v1/systems", headers=ADMIN).status_code == 429
    clock.now += 1  # the first failure is 60 s old
    assert witness.client.get("/api/v1/systems", headers=ADMIN).status_code == 200
    # One slot is free: one more failure, then locked again (refusals are not counted).
    _fail(witness.client, 1)
    assert witness.client.get("/api/v1/systems", headers=BAD).status_code == 429


def test_successes_are_not_counted(witness: Witness) -> None:
    system_id, own = witness.register("alpha")
    for _ in range(40):  # more than the default limit of 30
        assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat",
                                   headers=own).status_code == 200
        assert witness.client.get("/api/v1/systems", headers=ADMIN).status_code == 200
    # A valid key used for another system (403) is not an authentication failure either.
    _, other = witness.register("beta")
    for _ in range(40):
        assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat",
                                   headers=other).status_code == 403
    _fail(witness.client, 29)
    assert witness.client.get("/api/v1/systems", headers=ADMIN).status_code == 200


def test_addresses_are_counted_separately(make_witness: Callable[..., Witness],
                                          peers: Callable[..., TestClient]) -> None:
    witness = make_witness(auth_failures_per_minute=2)
    attacker, neighbour = peers(witness, "203.0.113.9"), peers(witness, "203.0.113.10")
    _fail(attacker, 2)
    assert attacker.get("/api/v1/systems", headers=ADMIN).status_code == 429
    assert neighbour.get("/api/v1/systems", headers=ADMIN).status_code == 200
    assert witness.client.get("/api/v1/systems", headers=ADMIN).status_code == 200


def test_forwarded_for_is_believed_only_from_trusted_proxies(
        make_witness: Callable[..., Witness], peers: Callable[..., TestClient]) -> None:
    witness = make_witness(auth_failures_per_minute=2, trusted_proxies=["10.0.0.0/24"])
    proxy, stranger = peers(witness, "10.0.0.5"), peers(witness, "203.0.113.9")
    one = {"X-Forwarded-For": "198.51.100.1"}
    two = {"X-Forwarded-For": "198.51.100.2"}
    _fail(proxy, 2, {**BAD, **one})
    assert proxy.get("/api/v1/systems", headers={**ADMIN, **one}).status_code == 429
    # The proxy itself and its other clients are not locked out.
    assert proxy.get("/api/v1/systems", headers={**ADMIN, **two}).status_code == 200
    assert proxy.get("/api/v1/systems", headers=ADMIN).status_code == 200
    # A client that puts the header in itself neither escapes nor frames 198.51.100.2.
    _fail(stranger, 2, {**BAD, **two})
    assert stranger.get("/api/v1/systems", headers={**ADMIN, **one}).status_code == 429
    assert proxy.get("/api/v1/systems", headers={**ADMIN, **two}).status_code == 200
    # A client-made entry left of the proxy's own does not change the count either.
    spoofed = {"X-Forwarded-For": "198.51.100.77, 198.51.100.1"}
    assert proxy.get("/api/v1/systems", headers={**ADMIN, **spoofed}).status_code == 429


def test_dashboard_sign_in_is_limited(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(auth_failures_per_minute=3)
    clock = _pin_clock(witness)
    for _ in range(2):
        wrong = witness.client.post("/login", data={"token": "not-the-admin-token"})
        assert wrong.status_code == 401 and "That is not the admin token." in wrong.text
    _fail(witness.client, 1)  # API and dashboard failures share the count
    page = witness.client.post("/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    assert page.status_code == 429 and page.headers["Retry-After"] == "60"
    assert "Too many failed sign-ins from this address: try again in 60 s." in page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert "set-cookie" not in page.headers
    clock.now += 60
    signed_in = witness.client.post("/login", data={"token": ADMIN_TOKEN},
                                    follow_redirects=False)
    assert signed_in.status_code == 303 and "set-cookie" in signed_in.headers


def test_an_empty_sign_in_is_not_a_failure(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(auth_failures_per_minute=1)
    for _ in range(3):
        assert witness.client.post("/login", data={"token": ""}).status_code == 401
    assert witness.client.get("/api/v1/systems", headers=ADMIN).status_code == 200


def test_failures_and_the_lockout_are_logged_without_the_credential(
        make_witness: Callable[..., Witness], caplog: pytest.LogCaptureFixture) -> None:
    witness = make_witness(auth_failures_per_minute=3)
    secret = "zs_fedcba9876543210_this-guess-must-not-be-logged"
    caplog.set_level(logging.INFO)
    for _ in range(2):
        witness.client.get("/api/v1/systems", headers={"Authorization": f"Bearer {secret}"})
    witness.client.post("/login", data={"token": secret})
    for _ in range(5):
        witness.client.get("/api/v1/systems", headers={"X-API-Key": secret})
    messages = [r.getMessage() for r in caplog.records]
    failures = [m for m in messages if m.startswith("auth failure:")]
    lockouts = [r for r in caplog.records if r.getMessage().startswith("locking out")]
    assert len(failures) == 3  # refused (429) requests are not logged one by one
    assert len(lockouts) == 1 and lockouts[0].levelno == logging.WARNING
    assert lockouts[0].getMessage().startswith("locking out testclient after 3 failed")
    assert not [m for m in messages if "fedcba9876543210" in m or "this-guess" in m]
