"""CORS is closed unless configured; dashboard pages cannot be framed or sniffed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import ADMIN, Witness

ORIGIN = "https://ops.example.net"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "X-API-Key, Content-Type"}


def test_cors_is_closed_by_default(witness: Witness) -> None:
    for path, headers in (("/api/v1/health", {}), ("/api/v1/systems", ADMIN), ("/", {})):
        response = witness.client.get(path, headers={**headers, "Origin": ORIGIN})
        assert response.status_code == 200
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    preflight = witness.client.options("/api/v1/systems", headers=PREFLIGHT)
    assert preflight.status_code == 405  # no CORS middleware: nothing answers OPTIONS
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]


def test_cors_allows_exactly_the_configured_origins(
        make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(cors_origins=[ORIGIN, "http://localhost:3000"])
    response = witness.client.get("/api/v1/systems", headers={**ADMIN, "Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Access-Control-Allow-Credentials" not in response.headers  # no cookies cross-site
    preflight = witness.client.options("/api/v1/systems", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    other = "https://evil.example"
    response = witness.client.get("/api/v1/systems", headers={**ADMIN, "Origin": other})
    assert "Access-Control-Allow-Origin" not in response.headers
    refused = witness.client.options("/api/v1/systems", headers={**PREFLIGHT, "Origin": other})
    assert refused.status_code == 400
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_cors_origins_from_the_environment() -> None:
    from zfs_sync.config import load_settings

    settings = load_settings(env={"ZFS_SYNC_CORS_ORIGINS": f"{ORIGIN}, http://localhost:3000"})
    assert settings.cors_origins == [ORIGIN, "http://localhost:3000"]


@pytest.mark.parametrize("path", ["/", "/systems", "/groups", "/conflicts", "/activity",
                                  "/login", "/systems/no-such-system"])
def test_dashboard_pages_cannot_be_framed_or_sniffed(witness: Witness, path: str) -> None:
    response = witness.client.get(path)
    assert response.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_sign_in_pages_carry_the_headers(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(public_read=False)
    for response in (witness.client.get("/"),
                     witness.client.post("/login", data={"token": "wrong-token"})):
        assert response.status_code == 401
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_api_responses_are_nosniff(witness: Witness) -> None:
    responses = [
        witness.client.get("/api/v1/health"),
        witness.client.get("/api/v1/systems", headers={"X-API-Key": "wrong"}),  # 401
        witness.client.get("/api/v1/no-such-route"),  # 404
        witness.client.get("/api/v1/systems/%00"),  # 400 from the URL check middleware
        witness.client.post("/api/v1/systems", headers={**ADMIN, "Content-Length": "999999999"},
                            content=b"{}"),  # 413 from the body limit middleware
    ]
    assert [r.status_code for r in responses] == [200, 401, 404, 400, 413]
    for response in responses:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers.get_list("X-Content-Type-Options") == ["nosniff"]
