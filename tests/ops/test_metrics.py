"""/metrics: Prometheus text that prometheus_client's parser reads, with values for a fleet."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_sync import NOW, at, pair
from tests.conftest import Witness
from zfs_sync.monitor import tick


def scrape(witness: Witness) -> dict[str, list[Any]]:
    response = witness.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def value(families: dict[str, list[Any]], name: str, **labels: str) -> float:
    for family in families.values():
        for sample in family:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_for_a_small_fleet(witness: Witness) -> None:
    p = pair(witness)  # src has s20..s22, dst has s20..s21: one snapshot behind
    witness.register("never-seen")
    late = NOW + timedelta(hours=2)
    at(witness, late, p.src)  # dst stays silent: offline after 300 s
    result = tick(witness.db, witness.settings, late)
    witness.client.app.state.metrics.observe_tick(result.seconds)
    witness.client.get("/api/v1/systems")
    witness.client.get(f"/api/v1/systems/{p.src.id}")
    witness.client.delete(f"/api/v1/systems/{p.src.id}")  # no credential: 401
    families = scrape(witness)

    # Health is derived at scrape time from the real clock: every heartbeat above is in 2026.
    assert value(families, "zfs_sync_systems", status="unknown") == 1
    assert (
        value(families, "zfs_sync_systems", status="online")
        + value(families, "zfs_sync_systems", status="offline")
        == 2
    )
    assert value(families, "zfs_sync_snapshots", hostname="src") == 3
    assert value(families, "zfs_sync_snapshots", hostname="dst") == 2
    assert value(families, "zfs_sync_snapshots", hostname="never-seen") == 0
    assert (
        value(
            families, "zfs_sync_edge_snapshots_behind", group="g1", dataset="data", target=p.dst.id
        )
        == 1
    )
    assert value(families, "zfs_sync_edge_lag_seconds", group="g1", target=p.dst.id) > 0
    assert value(families, "zfs_sync_sync_states", status="out_of_sync") == 1
    assert value(families, "zfs_sync_conflicts_open") == 0
    assert value(families, "zfs_sync_monitor_tick_duration_seconds_count") == 1
    assert (
        value(
            families,
            "zfs_sync_http_requests_total",
            route="/api/v1/systems/{system_id}",
            method="GET",
            status="200",
        )
        == 1
    )
    assert (
        value(
            families,
            "zfs_sync_http_requests_total",
            route="/api/v1/systems/{system_id}",
            method="DELETE",
            status="401",
        )
        == 1
    )
    assert (
        value(
            families,
            "zfs_sync_http_request_duration_seconds_count",
            route="/api/v1/systems",
            method="GET",
        )
        >= 1
    )


def test_sync_results_and_conflicts(witness: Witness) -> None:
    p = pair(witness)
    action = witness.client.get(
        f"/api/v1/sync/instructions/{p.dst.id}", headers=p.dst.headers
    ).json()["actions"][0]
    body = {
        "sync_group_id": p.group,
        "system_id": p.dst.id,
        "status": "error",
        "snapshot_id": action["snapshot_id"],
        "error_message": "receive failed",
    }
    assert witness.client.post(
        "/api/v1/sync/states", json=body, headers=p.dst.headers
    ).status_code in (200, 201)
    families = scrape(witness)
    assert value(families, "zfs_sync_sync_results", status="error") == 1


def test_metrics_follow_public_read(make_witness: Any) -> None:
    closed = make_witness(public_read=False)
    assert closed.client.get("/metrics").status_code == 401
    from tests.conftest import ADMIN

    assert closed.client.get("/metrics", headers=ADMIN).status_code == 200
