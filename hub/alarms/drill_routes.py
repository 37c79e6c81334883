"""Drills: an administrator runs synthetic panic presses through the real path, timed.

`POST /api/drills` publishes drill presses over MQTT for registered buttons and
answers with the latency of each stage (see `hub.alarms.drill`). Admin only; audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hub.alarms.drill import DrillError
from hub.alarms.drill_schemas import DrillIn, DrillOut
from hub.alarms.drill_service import DrillService
from hub.api.deps import get_drills
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, require

__all__ = ["router"]

router = APIRouter(prefix="/api/drills", tags=["drills"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


@router.post("", response_model=DrillOut)
async def run_drill(
    body: DrillIn, principal: Admin, drills: Annotated[DrillService, Depends(get_drills)]
) -> DrillOut:
    """Run a drill now and answer with its latency report; 409 when it cannot run."""
    try:
        result = await drills.run(
            actor=principal.actor,
            remote_addr=principal.remote_addr,
            presses=body.presses,
            devices=body.devices,
            slo_s=body.slo_s,
            interval_s=body.interval_s,
            timeout_s=body.timeout_s,
        )
    except DrillError as exc:
        raise Problem(409, "Drill cannot run", str(exc)) from exc
    return DrillOut.model_validate(result)
