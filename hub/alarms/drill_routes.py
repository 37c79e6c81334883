"""Drills: an administrator runs synthetic panic presses through the real path, timed.

`POST /api/drills` publishes drill presses over MQTT for registered buttons and
answers with the latency of each stage (see `hub.alarms.drill`). Admin only; audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hub.alarms.drill import DrillError, DrillRunner
from hub.alarms.drill_schemas import DrillIn, DrillOut
from hub.api.deps import Services, get_services
from hub.api.problems import Problem
from hub.auth import audit_storage as audit_log
from hub.auth.guards import Principal, Role, require

__all__ = ["router"]

router = APIRouter(prefix="/api/drills", tags=["drills"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def runner_for(services: Services) -> DrillRunner:
    """A drill runner over the hub's services (503 without the alarm engine)."""
    if services.alarms is None or services.alarm_changes is None:
        raise Problem(503, "Alarms unavailable", "this hub runs without the alarm engine")
    sinks = [(sink.name, sink.drill) for sink in services.settings.alarms.sinks]
    return DrillRunner(
        store=services.store,
        mqtt=services.settings.mqtt,
        events=services.events,
        alarm_changes=services.alarm_changes,
        alarms=services.alarms,
        sinks=sinks,
    )


@router.post("", response_model=DrillOut)
async def run_drill(
    body: DrillIn, principal: Admin, services: Annotated[Services, Depends(get_services)]
) -> DrillOut:
    """Run a drill now and answer with its latency report; 409 when it cannot run."""
    runner = runner_for(services)
    try:
        report = await runner.run(
            body.presses,
            devices=body.devices,
            slo_s=body.slo_s,
            interval_s=body.interval_s,
            timeout_s=body.timeout_s,
        )
    except DrillError as exc:
        raise Problem(409, "Drill cannot run", str(exc)) from exc
    result = report.as_dict()
    async with services.store.transaction() as tx:
        await audit_log.record(
            tx,
            principal.actor,
            "drill.run",
            "drill",
            principal.remote_addr,
            {"presses": body.presses, "passed": result["passed"], "stages": result["stages"]},
        )
    return DrillOut.model_validate(result)
