"""Online rate and intact rate per jurisdiction node and reporting day or month."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.devices.health_routes import get_health_repository
from hub.devices.health_schemas import KpiOut
from hub.devices.health_storage import HealthRepository
from hub.devices.kpi_report import ScopeError, build_kpi_report, parse_period

__all__ = ["router"]

router = APIRouter(prefix="/api/kpi", tags=["kpi"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE))]


@router.get("", response_model=KpiOut)
async def kpi(
    principal: Reader,
    repository: Annotated[HealthRepository, Depends(get_health_repository)],
    jurisdiction: Annotated[
        str | None,
        Query(description="Jurisdiction code; empty = everything the caller sees."),
    ] = None,
    month: Annotated[str | None, Query(description="Reporting month, e.g. 2026-11.")] = None,
    day: Annotated[str | None, Query(description="Reporting day, e.g. 2026-11-20.")] = None,
) -> KpiOut:
    """Time-weighted online and intact rates of the node's subtree and of each child node.

    Days and months are Asia/Shanghai reporting periods; time with an unknown
    state is left out of the denominator (reported as unknown_s).
    """
    try:
        period = parse_period(month=month, day=day)
    except ValueError as exc:
        raise Problem(422, "Invalid request", str(exc)) from exc
    try:
        report = await build_kpi_report(
            repository,
            period=period,
            until=datetime.now(UTC),
            code=jurisdiction,
            scope_paths=principal.scope_paths,
        )
    except ScopeError as exc:
        raise not_found("jurisdiction") from exc
    return KpiOut.model_validate(report.as_dict())
