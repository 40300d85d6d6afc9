"""Brute-force protection: failed authentications are counted per client address.

More than ``settings.auth_failures_per_minute`` failures from one address in a sliding 60 s
window lock that address out: every request from it that presents a credential (valid or
not, so a lucky guess cannot be told apart) gets 429 with ``Retry-After`` until the oldest
failure leaves the window. Refused requests are not counted, so a client that keeps trying
gets at most that many guesses a minute. Successful requests are never counted.

The client address is the socket peer, unless the peer is one of ``settings.trusted_proxies``
(addresses or CIDR networks): then it is the right-most ``X-Forwarded-For`` entry that is
not itself a trusted proxy (entries further left are whatever the client sent).

State is in memory, per process (one limiter per app, on ``app.state``).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import Request

from zfs_sync.api.errors import ApiError
from zfs_sync.config import Settings

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000
MAX_ADDRESS_CHARS = 64
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Failures:
    times: deque[float]
    announced: bool = False


@dataclass
class FailureLimiter:
    """Sliding-window failure counts per address; thread-safe, with bounded memory.

    Addresses are kept in order of their latest failure, so the stale ones are at the front
    and are dropped as new failures arrive; at most ``max_addresses`` are kept (the least
    recently failing go first).
    """

    limit: int
    window: float = WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    max_addresses: int = MAX_ADDRESSES
    _entries: OrderedDict[str, _Failures] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may present a credential again, or None if it may now."""
        with self._lock:
            now = self.clock()
            entry = self._entries.get(address)
            if entry is None:
                return None
            self._prune(entry, now)
            if not entry.times:
                del self._entries[address]
                return None
            if len(entry.times) < self.limit:
                return None
            return max(1, math.ceil(entry.times[0] + self.window - now))

    def record_failure(self, address: str) -> bool:
        """Count one failure; True when it locks the address out (once per lockout)."""
        with self._lock:
            now = self.clock()
            entry = self._entries.pop(address, None)
            if entry is None:
                entry = _Failures(deque(maxlen=self.limit))
            self._prune(entry, now)
            if not entry.times:
                entry.announced = False
            entry.times.append(now)
            self._entries[address] = entry  # now the most recent
            self._evict(now)
            if len(entry.times) >= self.limit and not entry.announced:
                entry.announced = True
                return True
            return False

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self, entry: _Failures, now: float) -> None:
        while entry.times and entry.times[0] <= now - self.window:
            entry.times.popleft()

    def _evict(self, now: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            fresh = bool(oldest.times) and oldest.times[-1] > now - self.window
            if fresh and len(self._entries) <= self.max_addresses:
                return
            self._entries.popitem(last=False)


def trusted_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Parse ``trusted_proxies``: plain addresses and CIDR networks."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   networks: tuple[Network, ...]) -> str:
    """The address failures count against (see the module docstring)."""
    peer_ip = _parse_ip(peer) if peer else None
    if not _trusted(peer_ip, networks):
        return str(peer_ip) if peer_ip is not None else (peer or "unknown")[:MAX_ADDRESS_CHARS]
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_ip = _parse_ip(hop)
        if not _trusted(hop_ip, networks):
            return str(hop_ip) if hop_ip is not None else hop[:MAX_ADDRESS_CHARS]
    # Every hop is a trusted proxy: the left-most is the closest we know to the client.
    return str(_parse_ip(hops[0])) if hops else str(peer_ip)


@dataclass(frozen=True)
class AuthFailureGuard:
    """What a request needs: the limiter and who may set ``X-Forwarded-For``."""

    limiter: FailureLimiter
    proxies: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings,
                      clock: Callable[[], float] = time.monotonic) -> AuthFailureGuard:
        return cls(FailureLimiter(settings.auth_failures_per_minute, clock=clock),
                   trusted_networks(settings.trusted_proxies))

    def address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.getlist("x-forwarded-for"), self.proxies)


def _guard(request: Request) -> AuthFailureGuard:
    return request.app.state.auth_guard  # type: ignore[no-any-return]


def locked_for(request: Request) -> int | None:
    """Seconds this request's address must wait before presenting a credential, or None."""
    guard = _guard(request)
    address = guard.address(request)
    retry_after = guard.limiter.retry_after(address)
    if retry_after is not None:
        log.debug("refused a credential from %s on %s %s: locked out for %d s more", address,
                  request.method, request.url.path, retry_after)
    return retry_after


def too_many_failures(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "E_TOO_MANY_AUTH_FAILURES",
        "Too many failed authentications from this address; credentials from it are refused "
        f"for {retry_after} s.",
        "Wait for Retry-After seconds, then use a valid API key or admin token "
        "(the limit is ZFS_SYNC_AUTH_FAILURES_PER_MINUTE).",
        headers={"Retry-After": str(retry_after)},
    )


def refuse_if_locked(request: Request) -> None:
    """Raise 429 when the request's address is locked out."""
    retry_after = locked_for(request)
    if retry_after is not None:
        raise too_many_failures(retry_after)


def record_failure(request: Request) -> None:
    """Count a failed authentication; log the start of a lockout (never the credential).

    Each failure itself is logged by the access log (``metrics.HttpMetricsMiddleware``).
    """
    guard = _guard(request)
    address = guard.address(request)
    if guard.limiter.record_failure(address):
        log.warning("locking out %s after %d failed authentications within %d s (last on "
                    "%s %s): its credentials get 429 until the oldest failure is %d s old",
                    address, guard.limiter.limit, guard.limiter.window, request.method,
                    request.url.path, guard.limiter.window)
