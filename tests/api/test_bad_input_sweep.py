"""Every route x bad input: a clear 4xx with detail/code/hint, never a 5xx, nothing stored.

Uses the authorization matrix's route table (every route of the OpenAPI document) and its
valid bodies, then breaks them: malformed JSON, wrong JSON types, shell metacharacters in
every string, unknown ids in the path, nonsense query parameters. The whole database is
compared before and after each bad request.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import text

from tests.api.test_authz_matrix import ROUTES, World, _body, _url, _world
from tests.conftest import ADMIN, Witness
from zfs_sync.storage.models import Base

HOSTILE = ["a;b", "a$(id)", "a`id`", "a|b", "a&b", "a'b", 'a"b', "a\nb", "-rf", "a%b", "../x"]
WRITES = sorted(r for r in ROUTES if r.split(" ")[0] in ("POST", "PUT"))
# Routes that read a JSON body (the heartbeat's is optional; rotation takes none).
BODIES = [r for r in WRITES if ROUTES[r][1] is not None or r.endswith(("/heartbeat", "/systems"))]


def _dump(w: World) -> list[Any]:
    with w.witness.db.read() as session:
        return [
            sorted(map(tuple, session.execute(text(f'SELECT * FROM "{table.name}"')).all()), key=repr)
            for table in Base.metadata.sorted_tables
        ]


def _check_refused(response: Any, context: object) -> None:
    assert 400 <= response.status_code < 500, (context, response.status_code, response.text)
    body = response.json()
    assert body.get("detail") and body.get("code"), (context, body)


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_paths(v, path + (k,))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_paths(v, path + (i,))]
    return []


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    result = copy.deepcopy(value)
    target = result
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return result


@pytest.mark.parametrize("route", BODIES)
def test_malformed_and_mistyped_bodies(witness: Witness, route: str) -> None:
    w = _world(witness)
    before = _dump(w)
    method = route.split(" ")[0]
    url = _url(route, w)
    headers = {**ADMIN, "Content-Type": "application/json"}
    for raw in (b"{not json", b'{"a": 1', b"\xff\xfe", b"[1, 2, 3]", b"42", b'"text"', b"null"):
        if raw == b"null" and route.endswith("/heartbeat"):
            continue  # an empty heartbeat is valid
        response = witness.client.request(method, url, content=raw, headers=headers)
        _check_refused(response, (route, raw))
    assert _dump(w) == before


@pytest.mark.parametrize("route", [r for r in WRITES if ROUTES[r][1] is not None])
def test_hostile_strings_in_every_field(witness: Witness, route: str) -> None:
    w = _world(witness)
    before = _dump(w)
    method = route.split(" ")[0]
    body = _body(route, w)
    for path in _string_paths(body):
        if path and path[-1] in ("timestamp", "description", "name") and "sync-groups" in route:
            continue  # free text there: a group name or description may contain anything printable
        if path and path[-1] in ("error_message", "note"):
            continue  # free text: an agent's stderr tail, an admin's note
        for bad in HOSTILE:
            broken = _replace(body, path, bad)
            response = witness.client.request(method, _url(route, w), json=broken, headers=ADMIN)
            _check_refused(response, (route, path, bad))
    assert _dump(w) == before


@pytest.mark.parametrize("route", sorted(r for r in ROUTES if "{}" in r))
def test_unknown_ids_are_404(witness: Witness, route: str) -> None:
    w = _world(witness)
    before = _dump(w)
    method, path = route.split(" ", 1)
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "x" * 300):
        url = path.replace("{}", unknown)
        response = witness.client.request(method, url, json=_body(route, w), headers=ADMIN)
        _check_refused(response, (route, unknown))
        assert response.status_code in (404, 422), (route, response.status_code)
    assert _dump(w) == before


@pytest.mark.parametrize("route", sorted(r for r in ROUTES if r.startswith("GET")))
def test_bad_query_parameters(witness: Witness, route: str) -> None:
    w = _world(witness)
    url = _url(route, w)
    sep = "&" if "?" in url else "?"
    for query in ("limit=-1", "limit=abc", "limit=100000", "offset=-5", "since=yesterday-ish",
                  "days=-3", "system_ids=%00", "dataset=a;b", "logical_dataset=$(id)"):
        response = witness.client.get(f"{url}{sep}{query}")
        assert response.status_code < 500, (route, query, response.text)
        if response.status_code >= 400:
            assert response.json()["code"]


def test_wrong_field_types_name_the_field(witness: Witness) -> None:
    w = _world(witness)
    response = witness.client.post(
        "/api/v1/systems", json={"hostname": 12, "platform": ["x"]}, headers=ADMIN
    )
    assert response.status_code == 422
    locs = [tuple(e["loc"]) for e in response.json()["errors"]]
    assert ("body", "hostname") in locs and ("body", "platform") in locs
    response = witness.client.put(
        f"/api/v1/sync-groups/{w.group}", json={"sync_interval_seconds": "often"}, headers=ADMIN
    )
    assert response.status_code == 422 and "sync_interval_seconds" in response.text
