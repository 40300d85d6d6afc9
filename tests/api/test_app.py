"""Cross-cutting API behaviour: body limit, error shape, OpenAPI and offline docs."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN, Witness


def _routes(client: Any) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


def test_every_route_documents_its_auth(witness: Witness) -> None:
    spec = witness.client.get("/openapi.json").json()
    missing = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "**Auth:**" not in op.get("description", "")
    ]
    assert missing == []
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])


def test_docs_are_served_from_local_files(witness: Witness) -> None:
    page = witness.client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[0]
    for asset in ("/static/docs/swagger-ui-bundle.js", "/static/docs/swagger-ui.css"):
        assert witness.client.get(asset).status_code == 200


def test_body_limit_applies_to_every_route(make_witness: Any) -> None:
    witness = make_witness(max_body_bytes=2048)
    big = b'{"pad": "' + b"x" * 4096 + b'"}'
    for method, path in _routes(witness.client):
        if method not in ("POST", "PUT", "PATCH"):
            continue
        url = path.replace("{", "").replace("}", "")
        response = witness.client.request(
            method, url, content=big, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert response.status_code == 413, (method, path, response.status_code)
        assert response.json()["code"] == "E_BODY_TOO_LARGE"


def test_chunked_body_over_limit_is_refused(make_witness: Any) -> None:
    witness = make_witness(max_body_bytes=2048)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1024

    response = witness.client.post(
        "/api/v1/systems", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_unknown_route_and_method_use_the_error_shape(witness: Witness) -> None:
    missing = witness.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "E_NOT_FOUND"
    wrong = witness.client.patch("/api/v1/health")
    assert wrong.status_code == 405 and set(wrong.json()) >= {"detail", "code", "hint"}


def test_health_endpoints(witness: Witness) -> None:
    assert witness.client.get("/api/v1/health").json()["status"] == "healthy"
    assert witness.client.get("/api/v1/health/live").status_code == 200
    ready = witness.client.get("/api/v1/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_events_filters_and_pagination(witness: Witness) -> None:
    ids = [witness.register(f"host{i}")[0] for i in range(3)]
    events = witness.client.get("/api/v1/events?type=system")
    assert events.headers["X-Total-Count"] == "3"
    assert [e["system_id"] for e in events.json()] == list(reversed(ids))
    one = witness.client.get(f"/api/v1/events?system_id={ids[1]}").json()
    assert len(one) == 1 and one[0]["type"] == "system.registered"
    page = witness.client.get("/api/v1/events?limit=1&offset=1").json()
    assert page[0]["system_id"] == ids[1]
    assert witness.client.get("/api/v1/events?since=not-a-date").status_code == 422
    future = witness.client.get("/api/v1/events?since=2999-01-01T00:00:00Z").json()
    assert future == []


def test_control_characters_in_urls_are_refused(witness: Witness) -> None:
    for url in ("/api/v1/snapshots/gaps?system_ids=%00", "/api/v1/systems/a%0Ab",
                "/api/v1/events?type=%1b[31m"):
        response = witness.client.get(url)
        assert response.status_code == 400, url
        assert response.json()["code"] == "E_BAD_URL"


def test_nul_in_free_text_is_a_clean_4xx(witness: Witness) -> None:
    response = witness.client.post(
        "/api/v1/sync-groups", json={"name": "g", "description": "a\u0000b"}, headers=ADMIN
    )
    assert 400 <= response.status_code < 500
    assert witness.client.get("/api/v1/sync-groups").json() == []
