"""HTTP to the witness (``/api/v1``, DESIGN.md §7) with httpx.

Every call is small and idempotent (a full-state report, a heartbeat, a state claim), so
connection failures and 502/503/504 are retried a few times with backoff; any other error
becomes a ``WitnessError`` carrying the witness's own ``detail`` and ``hint``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from zfs_sync.agent import __version__

log = logging.getLogger("zfs_sync.agent.client")
RETRY_STATUS = (502, 503, 504)


class WitnessError(RuntimeError):
    """The witness answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        text = body["detail"]
        if isinstance(body.get("hint"), str):
            text += f" ({body['hint']})"
        return text
    return response.text[:300] or response.reason_phrase


class WitnessClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0,
                 verify: Any = True, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": f"zfs-sync-agent/{__version__}"}
        if api_key:
            headers["X-API-Key"] = api_key
        self.base_url = base_url.rstrip("/")
        self._retries = retries
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  verify=verify, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WitnessClient:  # noqa: PYI034 (3.9: no typing.Self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call, retried on transient failures; the decoded JSON (None for 204)."""
        delay = 1.0
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempt == self._retries:
                    raise WitnessError(
                        f"cannot reach the witness at {self.base_url}: {exc}") from None
                log.warning("witness unreachable (%s); retrying in %.0f s", exc, delay)
            else:
                if response.status_code not in RETRY_STATUS or attempt == self._retries:
                    return self._decode(method, path, response)
                log.warning("witness answered %s; retrying in %.0f s",
                            response.status_code, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _decode(self, method: str, path: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise WitnessError(
                f"{method} {path}: {response.status_code} {_error_text(response)}",
                response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # --- the calls the agent makes ---------------------------------------------------------

    def register(self, body: dict[str, Any], admin_token: str, replace: bool = False) -> Any:
        params = {"replace": "true"} if replace else None
        return self.request("POST", "/systems", json=body, params=params,
                            headers={"X-API-Key": admin_token})

    def heartbeat(self, system_id: str, body: dict[str, Any]) -> Any:
        return self.request("POST", f"/systems/{system_id}/heartbeat", json=body)

    def report(self, system_id: str, snapshots: list[dict[str, Any]],
               datasets: list[dict[str, Any]], scope: Sequence[str] | None = None) -> Any:
        body: dict[str, Any] = {"snapshots": snapshots, "datasets": datasets}
        if scope is not None:
            body["scope"] = list(scope)
        return self.request("PUT", f"/systems/{system_id}/snapshots", json=body)

    def instructions(self, system_id: str) -> Any:
        return self.request("GET", f"/sync/instructions/{system_id}")

    def post_state(self, body: dict[str, Any]) -> Any:
        return self.request("POST", "/sync/states", json=body)

    def protected_snapshots(self, system_id: str) -> Any:
        return self.request("GET", f"/systems/{system_id}/protected-snapshots")

    def system(self, system_id: str) -> Any:
        return self.request("GET", f"/systems/{system_id}")

    def system_health(self, system_id: str) -> Any:
        return self.request("GET", f"/systems/{system_id}/health")

    def sync_states(self, system_id: str) -> Any:
        return self.request("GET", "/sync/states", params={"system_id": system_id})
