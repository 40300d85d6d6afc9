"""The SSE endpoint: id/event/data lines, resuming, keepalive, read access, bounded."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import ADMIN, ADMIN_TOKEN, Witness

STREAM = "/api/v1/events/stream"


def read_stream(witness: Witness, **kwargs: Any) -> tuple[int, str]:
    params = {"max_seconds": 0.5, **kwargs.pop("params", {})}
    with witness.client.stream("GET", STREAM, params=params, **kwargs) as response:
        return response.status_code, response.read().decode()


def messages(text: str) -> list[dict[str, Any]]:
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":") and ": " in line)
        if "data" in fields:
            found.append({"id": int(fields["id"]), "event": fields["event"],
                          "data": json.loads(fields["data"])})
    return found


def test_stream_sends_events_after_an_id(witness: Witness) -> None:
    first, _ = witness.register("alpha")
    witness.register("beta")
    status, text = read_stream(witness, params={"after_id": 0})
    assert status == 200
    got = messages(text)
    assert [m["event"] for m in got] == ["system.registered", "system.registered"]
    assert got[0]["data"]["system_id"] == first and got[0]["id"] < got[1]["id"]
    assert text.startswith("retry: ")


def test_last_event_id_resumes(witness: Witness) -> None:
    witness.register("alpha")
    system_id, headers = witness.register("beta")
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    all_ids = [m["id"] for m in messages(read_stream(witness, params={"after_id": 0})[1])]
    _, text = read_stream(witness, headers={"Last-Event-ID": str(all_ids[0])})
    assert [m["id"] for m in messages(text)] == all_ids[1:]
    assert messages(text)[-1]["event"] == "system.online"


def test_without_a_position_only_new_events_come(witness: Witness) -> None:
    witness.register("alpha")
    _, text = read_stream(witness)
    assert messages(text) == []
    assert ": following events after" in text


def test_keepalive_comment_when_idle(witness: Witness, monkeypatch: Any) -> None:
    from zfs_sync.api.routes import stream

    monkeypatch.setattr(stream, "KEEPALIVE_SECONDS", 0.0)
    monkeypatch.setattr(stream, "POLL_SECONDS", 0.1)
    _, text = read_stream(witness)
    assert ": keepalive" in text


def test_stream_read_access(make_witness: Any) -> None:
    witness = make_witness(public_read=False)
    assert read_stream(witness)[0] == 401
    assert read_stream(witness, headers=ADMIN)[0] == 200
    witness.client.post("/login", data={"token": ADMIN_TOKEN})
    assert read_stream(witness)[0] == 200  # the dashboard's session cookie


def test_bad_parameters_are_422(witness: Witness) -> None:
    assert witness.client.get(STREAM, params={"max_seconds": 0}).status_code == 422
    assert witness.client.get(STREAM, params={"after_id": -1}).status_code == 422
