"""Schemathesis over ``/openapi.json``: every operation, anonymous and with credentials.

Each operation is fuzzed in-process (ASGI) on a fresh database seeded with a small fleet:
two systems, snapshots that diverge (so there are sync states and an open conflict) and a
directional sync group. Two runs:

- ``anonymous``: no credential at all (reads are public; writes must answer 401, not 500);
- ``credentials``: examples alternate between the admin token and the first system's own
  key, and half of them get real ids (of the seeded systems, group, snapshot, state and
  conflict) planted in the path, query and body, so the routes get past their 404s.

Every response must pass the checks below: no 5xx, a documented status code, the declared
content type, headers and body schema. Both positive (schema-valid) and negative
(schema-violating) examples are sent. Hypothesis is derandomized, so CI is repeatable; the
example count is small here (``FUZZ_EXAMPLES``, default 5 per operation and mode) and large
in ``bench/fuzz.py``, which runs the same code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err
from sqlalchemy import create_engine, text

from zfs_sync.api.app import create_app
from zfs_sync.api.routes import stream
from zfs_sync.config import load_settings
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import Base

API = "/api/v1"
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"X-API-Key": ADMIN_TOKEN}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CREDENTIAL_HEADERS = ("x-api-key", "authorization")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CI_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))


# -- a fresh, seeded witness per operation ----------------------------------------------------


@dataclass
class Fleet:
    """What the seed created: ids to plant in requests, and the first system's key."""

    ids: dict[str, list[Any]]
    system_key: str


class Databases:
    """Fresh databases: copies of a SQLite file, or one PostgreSQL database emptied.

    On SQLite the seeded fleet is kept (``keep``) and every later database is a copy of it;
    on PostgreSQL each one is emptied and seeded again.
    """

    def __init__(self, workdir: Path, sqlite_template: Path | None = None,
                 postgres_url: str | None = None) -> None:
        assert (sqlite_template is None) != (postgres_url is None)
        self.workdir = workdir
        self.template = sqlite_template
        self.postgres_url = postgres_url
        self.seeded: Path | None = None

    def fresh(self) -> Database:
        if self.postgres_url is not None:
            engine = create_engine(self.postgres_url)
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            engine.dispose()
            return Database(self.postgres_url)
        path = Path(tempfile.mkdtemp(dir=self.workdir)) / "zfs_sync.db"
        shutil.copy(self.seeded or self.template or "", path)
        return Database(f"sqlite:///{path}")

    def keep(self, db: Database) -> bool:
        """Make ``db`` (just seeded) the source of later copies; False if it cannot be."""
        if self.postgres_url is not None:
            return False
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.seeded = Path(str(db.engine.url.database))
        return True


def build_app(db: Database, workdir: Path) -> Any:
    settings = load_settings(
        env={}, database_url=db.url, data_dir=str(workdir / "data"), admin_token=ADMIN_TOKEN
    )
    return create_app(settings, db=db)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _snapshots(pool: str, *names: str) -> list[dict[str, Any]]:
    """``sN`` has the same guid on every host; ``xN`` exists only on this one."""
    return [
        {"name": name, "pool": pool, "dataset": f"{pool}/data",
         "timestamp": f"2026-11-26T{10 + i:02d}:00:00Z",
         "guid": str(1000 + i + (500 if name.startswith("x") else 0)),
         "createtxg": 100 + i, "used": 4096 * (i + 1), "referenced": 8192}
        for i, name in enumerate(names)
    ]


def seed_fleet(client: TestClient) -> Fleet:
    """Two systems; beta has diverged from alpha (its own x2); a directional group."""
    alpha = _ok(client.post(f"{API}/systems", headers=ADMIN, json={
        "hostname": "alpha", "platform": "linux", "ssh_hostname": "alpha.lan", "ssh_user": "zfs",
    }), 201)
    beta = _ok(client.post(f"{API}/systems", headers=ADMIN, json={
        "hostname": "beta", "platform": "linux", "ssh_hostname": "beta.lan",
    }), 201)
    for system in (alpha, beta):
        _ok(client.post(f"{API}/systems/{system['id']}/heartbeat", headers=ADMIN))
    _ok(client.put(f"{API}/systems/{alpha['id']}/snapshots", headers=ADMIN,
                   json={"snapshots": _snapshots("tank", "s0", "s1", "s2")}))
    _ok(client.put(f"{API}/systems/{beta['id']}/snapshots", headers=ADMIN,
                   json={"snapshots": _snapshots("backup", "s0", "x1")}))
    group = _ok(client.post(f"{API}/sync-groups", headers=ADMIN, json={
        "name": "fleet", "directional": True, "hub_system_id": alpha["id"],
        "members": [{"system_id": alpha["id"], "root": "tank"},
                    {"system_id": beta["id"], "root": "backup"}],
    }), 201)
    snapshots = _ok(client.get(f"{API}/snapshots", params={"system_id": alpha["id"]}))
    states = _ok(client.get(f"{API}/sync/states"))
    conflicts = _ok(client.get(f"{API}/conflicts"))
    system_ids = [alpha["id"], beta["id"]]
    ids: dict[str, list[Any]] = {
        "system_id": system_ids,
        "system_id_1": [alpha["id"]],
        "system_id_2": [beta["id"]],
        "hub_system_id": [alpha["id"]],
        "system_ids": [system_ids],
        "group_id": [group["id"]],
        "sync_group_id": [group["id"]],
        "snapshot_id": [s["id"] for s in snapshots],
        "state_id": [s["id"] for s in states],
        "conflict_id": [c["id"] for c in conflicts],
        "logical_dataset": ["data"],
    }
    return Fleet({k: v for k, v in ids.items() if v}, alpha["api_key"])


# -- the fuzzer -----------------------------------------------------------------------------


@dataclass
class Report:
    operations: list[str] = field(default_factory=list)
    examples: int = 0
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)  # distinct ones
    seconds: dict[str, float] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)

    def add_failure(self, operation: str, exc: BaseException) -> None:
        for failure in getattr(exc, "exceptions", [exc]):
            title = getattr(failure, "title", type(failure).__name__)
            status = str(getattr(failure, "status_code", ""))
            message = str(failure).strip()
            self.failures.setdefault((operation, str(title), status), message)
        if not getattr(exc, "exceptions", None) and not hasattr(exc, "title"):
            self.failures.setdefault((operation, type(exc).__name__, ""), repr(exc))

    def summary(self) -> str:
        lines = [f"{len(self.operations)} operations, {self.examples} examples, "
                 f"{len(self.failures)} distinct failures"]
        for (operation, title, _), message in sorted(self.failures.items()):
            lines.append(f"\n== {operation}: {title}\n{message}")
        return "\n".join(lines)


class Planter:
    """Credentials and ids for each example, chosen in a fixed rotation (repeatable)."""

    def __init__(self, fleet: Fleet | None) -> None:
        self.fleet = fleet
        self.count = 0

    def headers(self) -> dict[str, str]:
        if self.fleet is None:
            return {}
        return ADMIN if self.count % 2 == 0 else {"X-API-Key": self.fleet.system_key}

    def plant(self, case: Any) -> None:
        """Every other pair of examples: real ids where the case has fields with id names."""
        self.count += 1
        # Schemathesis makes up values for the security schemes; this run's credential (or
        # none) is the only one sent, so that two different ones do not just get 400.
        for name in [h for h in case.headers or {} if h.lower() in CREDENTIAL_HEADERS]:
            del case.headers[name]
        if case.path.endswith("/events/stream"):
            # The stream answers for max_seconds (default 300) by design: keep it short.
            seconds = (case.query or {}).get("max_seconds", 0.05)
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                case.query = {**(case.query or {}), "max_seconds": min(seconds, 0.05)}
        if self.fleet is None or (self.count // 2) % 2 == 1:
            return
        pick = self.count // 4
        for container in (case.path_parameters, case.query, case.body):
            if not isinstance(container, dict):
                continue
            for name in container:
                if name in self.fleet.ids:
                    choices = self.fleet.ids[name]
                    container[name] = choices[pick % len(choices)]

    def follow(self, case: Any, response: Any) -> None:
        """Keep the system key current when an example rotates or revokes it."""
        if self.fleet is None or response.status_code not in (200, 204):
            return
        if case.path == "/api/v1/systems/{system_id}/api-key/rotate":
            if case.path_parameters.get("system_id") == self.fleet.ids["system_id"][0]:
                self.fleet.system_key = response.json()["api_key"]
        elif case.path == "/api/v1/systems/{system_id}/api-key" and case.method == "DELETE":
            alpha = self.fleet.ids["system_id"][0]
            if case.path_parameters.get("system_id") == alpha:
                rotated = TestClient(case.operation.schema.app).post(
                    f"{API}/systems/{alpha}/api-key/rotate", headers=ADMIN)
                self.fleet.system_key = rotated.json()["api_key"]


def fuzz_operation(schema: Any, label: str, planter: Planter, report: Report,
                   max_examples: int, seed: int | None = None) -> None:
    """Send ``max_examples`` cases per generation mode; failures go to ``report``."""
    operation = schema.find_operation_by_label(label)
    for mode in MODES:

        # No shrinking: a failure is recorded (with schemathesis' curl line), not raised.
        @hypothesis_seed(seed)
        @settings(max_examples=max_examples, derandomize=seed is None, database=None,
                  deadline=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            planter.plant(case)
            report.examples += 1
            try:
                response = case.call(headers=planter.headers())
                report.statuses[(label, response.status_code)] += 1
                planter.follow(case, response)
                case.validate_response(response, checks=CHECKS)
            except BaseException as exc:  # noqa: B036 - schemathesis raises a BaseExceptionGroup
                report.add_failure(label, exc)

        try:
            run()
        except Unsatisfiable:
            pass  # no parameters and no body: there is nothing to make invalid


def operation_labels(schema: Any) -> list[str]:
    labels = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the app's own OpenAPI must load
        labels.append(result.ok().label)
    return labels


def fuzz_all(
    databases: Databases,
    credentials: bool,
    max_examples: int,
    only: Callable[[str], bool] = lambda _: True,
    seed: int | None = None,
) -> Report:
    """Every operation (``only`` filters by label) on its own fresh, seeded database."""
    report = Report()
    # The event stream ends after max_seconds or when the client leaves; poll fast here.
    stream.POLL_SECONDS = 0.01
    labels: list[str] = []
    fleet: Fleet | None = None
    kept = False
    index = 0
    while index == 0 or index < len(labels):
        db = databases.fresh()
        try:
            app = build_app(db, databases.workdir)
            if not kept:
                with TestClient(app) as client:
                    fleet = seed_fleet(client)
                kept = databases.keep(db)
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            if index == 0:
                labels = [label for label in operation_labels(schema) if only(label)]
                if not labels:
                    break
                if kept:  # the seeded file stays pristine: fuzz a copy of it
                    db.dispose()
                    db = databases.fresh()
                    app = build_app(db, databases.workdir)
                    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            label = labels[index]
            report.operations.append(label)
            started = time.monotonic()
            assert fleet is not None
            planter = Planter(replace(fleet, ids=dict(fleet.ids)) if credentials else None)
            fuzz_operation(schema, label, planter, report, max_examples, seed)
            report.seconds[label] = time.monotonic() - started
            index += 1
        finally:
            db.dispose()
    return report


# -- the CI test ---------------------------------------------------------------------------


@pytest.fixture
def databases(sqlite_template: Path, tmp_path: Path) -> Databases:
    # SQLite only in CI, for time; bench/fuzz.py --postgres runs the same on PostgreSQL.
    return Databases(tmp_path, sqlite_template=sqlite_template)


@pytest.fixture(autouse=True)
def _restore_poll() -> Iterator[None]:
    saved = stream.POLL_SECONDS
    yield
    stream.POLL_SECONDS = saved


@pytest.mark.parametrize("credentials", [False, True], ids=["anonymous", "credentials"])
def test_every_operation_conforms(databases: Databases, credentials: bool) -> None:
    report = fuzz_all(databases, credentials, CI_EXAMPLES)
    assert len(report.operations) >= 40, report.operations
    assert not report.failures, report.summary()


# -- what the fuzzing found, pinned ----------------------------------------------------------


def test_offset_beyond_64_bits_is_a_422_not_a_500(witness: Any) -> None:
    # Found by fuzzing: OFFSET is a signed 64-bit integer in both databases (OverflowError).
    for path in ("/systems", "/snapshots", "/sync-groups", "/events", "/sync/states"):
        response = witness.client.get(f"{API}{path}", params={"offset": 10**30})
        assert response.status_code == 422, (path, response.text)
    assert witness.client.get(f"{API}/systems", params={"offset": 2**63 - 1}).json() == []


@pytest.mark.parametrize("last_event_id", [b"\xb2", b"9" * 32, b"12x", str(2**31).encode()])
def test_event_stream_ignores_an_odd_last_event_id(
    witness: Any, monkeypatch: pytest.MonkeyPatch, last_event_id: bytes
) -> None:
    # Found by fuzzing: "²".isdigit() is true but int("²") fails; 32 digits overflow int64;
    # events.id is a 32-bit integer on PostgreSQL.
    monkeypatch.setattr(stream, "POLL_SECONDS", 0.01)
    response = witness.client.get(f"{API}/events/stream", params={"max_seconds": 0.05},
                                  headers={"Last-Event-ID": last_event_id})
    assert response.status_code == 200, response.text
    assert response.text.startswith("retry: 2000\n")


def test_event_stream_after_id_beyond_the_id_column_is_a_422(witness: Any) -> None:
    response = witness.client.get(f"{API}/events/stream", params={"after_id": 2**31})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sync-groups", b'{"name": "g", "description": "\\ud800"}'),
        ("/systems", b'{"hostname": "h", "metadata": {"note": "\\udc00"}}'),
        ("/systems", b'{"hostname": "h", "metadata": {"\\ud800": 1}}'),
    ],
)
def test_lone_surrogate_escapes_are_invalid_json(witness: Any, path: str, body: bytes) -> None:
    # Found by fuzzing: json.loads accepts "\ud800", which no database can store (500).
    response = witness.client.post(f"{API}{path}", content=body,
                                   headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "E_INVALID_JSON"
    assert witness.client.get(f"{API}/systems").json() == []
