"""Camera patrol: progress of the running and recent passes; start a pass now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hub.api.deps import get_patrol
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, require
from hub.devices.health_schemas import PatrolOut, PatrolRunOut
from hub.devices.health_storage import PatrolRunRow
from hub.devices.patrol import PatrolProgress, PatrolService

__all__ = ["router"]

router = APIRouter(prefix="/api/patrol", tags=["patrol"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE))]
Runner = Annotated[Principal, Depends(require(Role.MAINTENANCE))]
Patrol = Annotated[PatrolService, Depends(get_patrol)]


def _from_progress(progress: PatrolProgress) -> PatrolRunOut:
    return PatrolRunOut.model_validate(progress.as_dict())


def _from_row(row: PatrolRunRow) -> PatrolRunOut:
    return PatrolRunOut(
        run_id=row.id,
        trigger=row.trigger,
        started_at=row.started_at,
        finished_at=row.finished_at,
        running=row.finished_at is None,
        total=row.total,
        done=row.done,
        failed=row.failed,
        degraded=row.degraded,
    )


async def _status(patrol: PatrolService) -> PatrolOut:
    current = patrol.current
    recent = await patrol.repository.recent_runs(limit=5)
    return PatrolOut(
        enabled=patrol.settings.enabled,
        interval_s=patrol.settings.interval_s,
        current=_from_progress(current) if current is not None else None,
        recent=[
            _from_progress(current)
            if current is not None and row.id == current.run_id
            else _from_row(row)
            for row in recent
        ],
    )


@router.get("", response_model=PatrolOut)
async def patrol_status(principal: Reader, patrol: Patrol) -> PatrolOut:
    """The pass in progress (cameras done of total) and the latest passes.

    Progress counts are not scoped: they say how far the hub-wide pass got,
    never which camera is where.
    """
    return await _status(patrol)


@router.post(
    "/run",
    response_model=PatrolOut,
    status_code=202,
    responses={409: {"description": "a pass is already running"}},
)
async def run_patrol(principal: Runner, patrol: Patrol) -> PatrolOut:
    """Start a full pass over every enabled camera now (maintenance staff and admins)."""
    if not patrol.trigger(trigger=f"api:{principal.subject}"[:64]):
        raise Problem(409, "Patrol running", "a patrol pass is already in progress")
    return await _status(patrol)
