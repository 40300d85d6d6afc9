"""Prometheus metrics at ``/metrics``.

Fleet series are computed at scrape time from the same functions the API uses (health is
derived from ``last_seen``, lag and backlog come from the planner); process series (HTTP
requests, monitor ticks) are counted as they happen. Each app has its own registry.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zfs_sync import planning
from zfs_sync.api.deps import ReadAccess
from zfs_sync.config import Settings
from zfs_sync.domain.health import system_health
from zfs_sync.storage.common import utcnow
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import ConflictRecord, Dataset, SyncState, System
from zfs_sync.storage.plan_inputs import groups_for

log = logging.getLogger("zfs_sync.access")

API_PREFIX = "/api/v1"
EDGE_LABELS = ["group", "dataset", "target"]


class FleetCollector(Collector):
    """Systems, snapshots, edges, sync states and conflicts, read when scraped."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with self.db.read() as session:
            yield from self._systems(session, now)
            yield from self._edges(session, now)
            yield from self._claims(session)
            open_conflicts = session.scalar(
                select(func.count()).select_from(ConflictRecord)
                .where(ConflictRecord.status == "open")) or 0
        yield GaugeMetricFamily("zfs_sync_conflicts_open", "Open conflicts.", value=open_conflicts)

    def _systems(self, session: Session, now: Any) -> Iterator[Metric]:
        by_status = GaugeMetricFamily("zfs_sync_systems", "Systems by heartbeat status.",
                                      labels=["status"])
        snapshots = GaugeMetricFamily("zfs_sync_snapshots", "Snapshots reported per system.",
                                      labels=["system_id", "hostname"])
        counts = dict(session.execute(
            select(Dataset.system_id, func.sum(Dataset.snapshot_count)).group_by(Dataset.system_id)
        ).all())
        tally: Tally[str] = Tally({"online": 0, "offline": 0, "unknown": 0})
        for system in session.scalars(select(System).order_by(System.hostname)):
            timeout = system.heartbeat_timeout_seconds or self.settings.heartbeat_timeout_seconds
            tally[system_health(system.last_seen, timeout, now).status.value] += 1
            snapshots.add_metric([system.id, system.hostname], int(counts.get(system.id) or 0))
        for status, count in sorted(tally.items()):
            by_status.add_metric([status], count)
        yield by_status
        yield snapshots

    def _edges(self, session: Session, now: Any) -> Iterator[Metric]:
        lag = GaugeMetricFamily("zfs_sync_edge_lag_seconds",
                                "Seconds the target is behind its source.", labels=EDGE_LABELS)
        behind = GaugeMetricFamily("zfs_sync_edge_snapshots_behind",
                                   "Source snapshots the target still lacks.", labels=EDGE_LABELS)
        states = GaugeMetricFamily("zfs_sync_sync_states", "Edges by derived sync status.",
                                   labels=["status"])
        tally: Tally[str] = Tally()
        for plan in planning.plan(session, groups_for(session), self.settings, now):
            owed = {(e.dataset, e.target_system_id): len(e.owed) for e in plan.edges}
            for s in plan.states:
                labels = [plan.group.name, s.dataset, s.target_system_id]
                lag.add_metric(labels, s.lag_seconds)
                behind.add_metric(labels, owed.get((s.dataset, s.target_system_id), 0))
                tally[s.status.value] += 1
        for status, count in sorted(tally.items()):
            states.add_metric([status], count)
        yield from (lag, behind, states)

    def _claims(self, session: Session) -> Iterator[Metric]:
        claims = GaugeMetricFamily("zfs_sync_sync_results",
                                   "Edges by the status of the agent's last sync report.",
                                   labels=["status"])
        rows = session.execute(
            select(SyncState.claim_status, func.count()).where(SyncState.claim_status.is_not(None))
            .group_by(SyncState.claim_status)).all()
        for status, count in sorted(rows):
            claims.add_metric([str(status)], count)
        yield claims


class Metrics:
    """One registry per app: the fleet collector plus HTTP and monitor series."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(FleetCollector(db, settings))
        self.requests = Counter("zfs_sync_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("zfs_sync_http_request_duration_seconds",
                                 "HTTP request latency by route.", ["method", "route"],
                                 registry=self.registry)
        self.tick_seconds = Histogram("zfs_sync_monitor_tick_duration_seconds",
                                      "Duration of the monitor's ticks.", registry=self.registry)

    def observe_tick(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetricsMiddleware:
    """Counts requests by route template (not raw path: ids would explode the label set).

    Also logs each authentication failure (401/403) once, with the client and route.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = _route_label(scope)
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            if status in (401, 403):
                client = (scope.get("client") or ("?", 0))[0]
                log.warning("auth failure: %s %s from %s answered %s",
                            method, route, client, status)


def _route_label(scope: Scope) -> str:
    """The route's template (``/api/v1/systems/{system_id}``), or ``unmatched``."""
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        return "unmatched"
    path = scope.get("path", "")
    # Routers included with a prefix may report their path without it.
    if path.startswith(API_PREFIX + "/") and not route.startswith(API_PREFIX):
        return API_PREFIX + route
    return str(route)


router = APIRouter()


@router.get("/metrics", include_in_schema=False, dependencies=[ReadAccess])
def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
