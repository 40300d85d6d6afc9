"""Snapshots: reports from hosts (single, batch, full state) and the queries over them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy.orm import Session

from zfs_sync.api.auth import PrincipalDep, check_own
from zfs_sync.api.deps import DbDep, Limit, NowDep, Offset, ReadAccess, SettingsDep
from zfs_sync.api.errors import ApiError
from zfs_sync.api.routes.common import (
    COMMON_ERRORS,
    OrjsonRoute,
    doc,
    error_responses,
    set_total,
    translate_not_found,
)
from zfs_sync.api.routes.sync import refresh_after_change
from zfs_sync.api.schemas.common import (
    DatasetName,
    LogicalDataset,
    PoolName,
    SnapshotName,
    Timestamp,
)
from zfs_sync.api.schemas.snapshots import (
    BatchResult,
    DatasetDifference,
    DatasetStats,
    Differences,
    Divergence,
    FullReport,
    Gaps,
    RawSnapshotCreate,
    ReportResult,
    SnapshotBatch,
    SnapshotPublic,
    SnapshotRef,
    SnapshotStatistics,
    SystemGap,
    check_full_report,
    read_one,
    read_snapshots,
)
from zfs_sync.domain import names
from zfs_sync.storage import snapshot_queries as queries
from zfs_sync.storage import snapshots as store
from zfs_sync.storage.models import Snapshot
from zfs_sync.storage.roots import system_roots

router = APIRouter(
    tags=["snapshots"], route_class=OrjsonRoute, responses=COMMON_ERRORS
)

Days = Annotated[int, Query(ge=1, le=36500, description="The period: the last N days.")]


def to_public(snapshot: Snapshot, root: str | None) -> SnapshotPublic:
    public = SnapshotPublic.model_validate(snapshot)
    if root is not None:
        public.logical_dataset = names.logical_dataset(snapshot.dataset, root)
    return public


def _root_conflict(exc: queries.RootUnknown) -> ApiError:
    return ApiError(
        409,
        "E_ROOT_UNKNOWN",
        f"The root of system {exc.system_id} is not known: it is not set in a sync group and "
        "the system has reported snapshots on several pools.",
        "Set the member's root in its sync group: PUT /api/v1/sync-groups/{id} with "
        '"members": [{"system_id": ..., "root": ...}, ...].',
    )


@router.post(
    "/snapshots",
    status_code=201,
    response_model=SnapshotPublic,
    responses={200: {"description": "An existing snapshot was updated.",
                     "model": SnapshotPublic}, **error_responses(403, 404, 413)},
    description=doc(
        "own",
        "Report one snapshot: 201 when new, 200 when it updates the stored one (same system, "
        "dataset and name). `name` may be `pool/dataset@snap`; `dataset` full or relative to "
        "`pool`; `size` and `used` are synonyms.",
    ),
)
def report_snapshot(
    raw: Annotated[RawSnapshotCreate, Body()],
    response: Response,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
) -> SnapshotPublic:
    system_id, facts = read_one(raw, ("body",))
    check_own(principal, system_id)
    with db.write(plan_neutral=True) as session, translate_not_found():
        snapshot, created = store.upsert_snapshot(session, facts, now)
        public = to_public(snapshot, queries.root_of(session, system_id))
    refresh_after_change(db, settings, now, system_id=system_id)
    response.status_code = 201 if created else 200
    return public


@router.post(
    "/snapshots/batch",
    responses=error_responses(403, 404, 413),
    response_model=BatchResult,
    description=doc(
        "own",
        "Report many snapshots (`{\"snapshots\": [...]}` or a bare JSON array): each is "
        "inserted or updated, nothing is deleted, and the batch is stored whole or not at all. "
        "A system key may only report its own system's snapshots.",
    ),
)
def report_batch(
    body: SnapshotBatch, principal: PrincipalDep, db: DbDep, settings: SettingsDep, now: NowDep
) -> BatchResult:
    facts = read_snapshots(body.snapshots, ("body", "snapshots"), require_system=True)
    systems = sorted({f.system_id for f in facts if f.system_id is not None})
    for system_id in systems:
        check_own(principal, system_id)
    with db.write(plan_neutral=True) as session, translate_not_found():
        counts = store.upsert_snapshots(session, facts, now)
    if counts.created or counts.updated:
        for system_id in systems:
            refresh_after_change(db, settings, now, system_id=system_id)
    return BatchResult(created=counts.created, updated=counts.updated, count=len(facts))


@router.put(
    "/systems/{system_id}/snapshots",
    responses=error_responses(403, 404, 413),
    response_model=ReportResult,
    tags=["systems"],
    description=doc(
        "own",
        "The full state of a system (what the agent sends): snapshots not in the report are "
        "deleted, new ones inserted, changed ones updated, all in one transaction. With "
        "`scope` (exact dataset names), only those datasets are replaced. `datasets`, when "
        "given, replaces the system's dataset records (within scope); `snapshots` or "
        "`datasets` left out leave those records as they are.",
    ),
)
def report_full_state(
    system_id: str, body: FullReport, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
    now: NowDep,
) -> ReportResult:
    check_own(principal, system_id)
    facts = None
    if body.snapshots is not None:
        facts = read_snapshots(body.snapshots, ("body", "snapshots"))
    check_full_report(system_id, facts, body)
    datasets = None
    if body.datasets is not None:
        datasets = [
            store.DatasetFacts(d.name, d.encryption, d.receive_resume_token) for d in body.datasets
        ]
    with db.write(plan_neutral=True) as session, translate_not_found():
        counts = store.replace_system_snapshots(
            session, system_id, facts, now, datasets=datasets, scope=body.scope,
        )
    if counts.created or counts.updated or counts.deleted or datasets is not None:
        refresh_after_change(db, settings, now, system_id=system_id)
    return ReportResult(
        created=counts.created, updated=counts.updated, deleted=counts.deleted,
        unchanged=counts.unchanged,
    )


@router.get(
    "/snapshots",
    response_model=list[SnapshotPublic],
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "Snapshots matching every filter given, newest first; total in X-Total-Count. "
        "`dataset` is a full name, `logical_dataset` one relative to each system's root; "
        "`since`/`until` bound the creation time.",
    ),
)
def list_snapshots(
    response: Response,
    db: DbDep,
    system_id: Annotated[str | None, Query(max_length=36)] = None,
    pool: Annotated[PoolName | None, Query()] = None,
    dataset: Annotated[DatasetName | None, Query()] = None,
    logical_dataset: Annotated[LogicalDataset | None, Query()] = None,
    name: Annotated[SnapshotName | None, Query(description="Snapshot name (after '@').")] = None,
    since: Annotated[Timestamp | None, Query()] = None,
    until: Annotated[Timestamp | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SnapshotPublic]:
    where = queries.SnapshotFilter(system_id, pool, dataset, logical_dataset, name, since, until)
    with db.read() as session:
        page = queries.list_snapshots(session, where, limit, offset)
        items = _public_page(session, page.items)
    set_total(response, page.total)
    return items


def _public_page(session: Session, snapshots: list[Snapshot]) -> list[SnapshotPublic]:
    roots = system_roots(session, {snapshot.system_id for snapshot in snapshots})
    return [to_public(snapshot, roots[snapshot.system_id]) for snapshot in snapshots]


@router.get(
    "/snapshots/history/{system_id}",
    responses=error_responses(404),
    response_model=list[SnapshotPublic],
    dependencies=[ReadAccess],
    description=doc("read", "The system's snapshots created in the last `days` days, newest "
                    "first; total in X-Total-Count."),
)
def snapshot_history(
    system_id: str,
    response: Response,
    db: DbDep,
    now: NowDep,
    days: Days = 30,
    dataset: Annotated[DatasetName | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SnapshotPublic]:
    with db.read() as session, translate_not_found():
        page = queries.history(session, system_id, now - timedelta(days=days), dataset, limit,
                               offset)
        items = _public_page(session, page.items)
    set_total(response, page.total)
    return items


@router.get(
    "/snapshots/statistics/{system_id}",
    responses=error_responses(404),
    response_model=SnapshotStatistics,
    dependencies=[ReadAccess],
    description=doc("read", "Counts and sizes of the system's snapshots, per dataset, and "
                    "how many were created in the last `days` days."),
)
def snapshot_statistics(
    system_id: str, db: DbDep, now: NowDep, days: Days = 30
) -> SnapshotStatistics:
    with db.read() as session, translate_not_found():
        stats = queries.statistics(session, system_id, now - timedelta(days=days))
    return SnapshotStatistics(
        system_id=system_id,
        period_days=days,
        period_start=stats.period_start,
        total_snapshots=stats.total_snapshots,
        total_size=stats.total_size,
        dataset_count=len(stats.datasets),
        snapshots_by_dataset={d.dataset: d.count for d in stats.datasets},
        datasets=[DatasetStats.model_validate(d) for d in stats.datasets],
        oldest_snapshot=stats.oldest,
        newest_snapshot=stats.newest,
        snapshots_in_period=stats.snapshots_in_period,
        size_in_period=stats.size_in_period,
    )


@router.get(
    "/snapshots/differences",
    responses=error_responses(404, 409),
    response_model=Differences,
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "Compare two systems per logical dataset (all of them, or `logical_dataset`): "
        "snapshots only on one side, how many both have, and names whose guids differ "
        "(diverged). Identity is the guid when both sides have one, else the name. 409 when a "
        "system's root is not known.",
    ),
)
def snapshot_differences(
    db: DbDep,
    system_id_1: Annotated[str, Query(max_length=36)],
    system_id_2: Annotated[str, Query(max_length=36)],
    logical_dataset: Annotated[LogicalDataset | None, Query()] = None,
) -> Differences:
    try:
        with db.read() as session, translate_not_found():
            found = queries.differences(session, system_id_1, system_id_2, logical_dataset)
    except queries.RootUnknown as exc:
        raise _root_conflict(exc) from None
    return Differences(
        system_id_1=system_id_1,
        system_id_2=system_id_2,
        root_1=found.roots[0],
        root_2=found.roots[1],
        datasets=[_difference(d) for d in found.datasets],
    )


def _difference(found: queries.DatasetDifference) -> DatasetDifference:
    comparison = found.comparison
    return DatasetDifference(
        logical_dataset=found.logical_dataset,
        dataset_1=found.dataset_1,
        dataset_2=found.dataset_2,
        only_on_1=[SnapshotRef.model_validate(s) for s in comparison.only_1],
        only_on_2=[SnapshotRef.model_validate(s) for s in comparison.only_2],
        common_count=comparison.common,
        diverged=[Divergence(name=a.name, guid_1=a.guid, guid_2=b.guid)
                  for a, b in comparison.diverged],
        in_sync=not (comparison.only_1 or comparison.only_2 or comparison.diverged),
    )


@router.get(
    "/snapshots/gaps",
    responses=error_responses(404, 409),
    response_model=Gaps,
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "Which snapshots of a logical dataset each system lacks, compared to the union of "
        "all of them. `system_ids` may be repeated or comma-separated; by default every system "
        "holding the dataset. 409 when a named system's root is not known.",
    ),
)
def snapshot_gaps(
    db: DbDep,
    logical_dataset: Annotated[LogicalDataset, Query()],
    system_ids: Annotated[list[str] | None, Query(description="System ids.")] = None,
) -> Gaps:
    ids = [part.strip() for value in system_ids or [] for part in value.split(",") if part.strip()]
    try:
        with db.read() as session, translate_not_found():
            report = queries.gaps(session, logical_dataset, ids or None)
    except queries.RootUnknown as exc:
        raise _root_conflict(exc) from None
    return Gaps(
        logical_dataset=logical_dataset,
        union_count=report.union_count,
        systems=[
            SystemGap(
                system_id=gap.system_id,
                root=gap.root,
                dataset=(
                    None if gap.root is None else names.join_dataset(gap.root, logical_dataset)
                ),
                snapshot_count=gap.snapshot_count,
                missing_count=len(gap.missing),
                missing=[SnapshotRef.model_validate(s) for s in gap.missing],
            )
            for gap in report.systems
        ],
    )


@router.get(
    "/snapshots/{snapshot_id}",
    responses=error_responses(404),
    response_model=SnapshotPublic,
    dependencies=[ReadAccess],
    description=doc("read", "One snapshot."),
)
def get_snapshot(snapshot_id: str, db: DbDep) -> SnapshotPublic:
    with db.read() as session, translate_not_found():
        snapshot = store.get_snapshot(session, snapshot_id)
        return to_public(snapshot, queries.root_of(session, snapshot.system_id))


@router.delete(
    "/snapshots/{snapshot_id}",
    responses=error_responses(403, 404),
    status_code=204,
    description=doc("own", "Forget one snapshot (the system's own key, or the admin token). "
                    "The host's next full report restores it if it still exists."),
)
def delete_snapshot(
    snapshot_id: str, principal: PrincipalDep, db: DbDep, settings: SettingsDep, now: NowDep
) -> Response:
    with db.write() as session, translate_not_found():
        snapshot = store.get_snapshot(session, snapshot_id)
        system_id = snapshot.system_id
        check_own(principal, system_id)
        store.delete_snapshot(session, snapshot_id, now)
    refresh_after_change(db, settings, now, system_id=system_id)
    return Response(status_code=204)
