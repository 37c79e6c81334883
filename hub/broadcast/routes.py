"""Broadcast units: list them, command one unit or a zone, read how a command ended.

Commands are operator/admin actions (recorded in the audit log); dispatchers may read.
Units and commands outside the caller's jurisdiction scope answer 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from hub.api.deps import get_broadcast
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.broadcast.schemas import (
    BroadcastCommandIn,
    BroadcastUnitOut,
    CommandOut,
    ZoneCommandsOut,
)
from hub.broadcast.service import BroadcastService, BroadcastUnavailable
from hub.broadcast.storage import CommandRecord

__all__ = ["router"]

router = APIRouter(prefix="/api/broadcast", tags=["broadcast"])

Commander = Annotated[Principal, Depends(require(Role.OPERATOR))]
Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DISPATCHER))]
Service = Annotated[BroadcastService, Depends(get_broadcast)]
Wait = Annotated[
    bool, Query(description="Answer only when the command ended (200) instead of at once (202).")
]
_ID = r"^[A-Za-z0-9_.\-]{1,64}$"
_ZONE = r"^[^/\x00-\x1f]{1,64}$"


def _remote_addr(principal: Principal, request: Request) -> str | None:
    if principal.remote_addr:
        return principal.remote_addr
    return request.client.host if request.client else None


def _unavailable(exc: BroadcastUnavailable) -> Problem:
    return Problem(503, "Broadcast unavailable", str(exc))


async def _reread(
    service: BroadcastService, records: list[CommandRecord], principal: Principal
) -> list[CommandRecord]:
    await service.wait([r.id for r in records])
    out = []
    for record in records:
        ended = await service.get(record.id, principal.scope_paths)
        out.append(ended or record)
    return out


@router.get("/units", response_model=list[BroadcastUnitOut])
async def list_units(
    principal: Reader,
    service: Service,
    zone: Annotated[str | None, Query(max_length=64, description="Only units tagged so.")] = None,
) -> list[BroadcastUnitOut]:
    """Broadcast units in the caller's jurisdiction with status online/busy/fault/offline."""
    views = await service.units(principal.scope_paths, zone=zone)
    return [BroadcastUnitOut.of(view) for view in views]


@router.post(
    "/units/{unit_id}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"description": "ended (with ?wait=true)"}, 404: {}, 503: {}},
)
async def command_unit(
    unit_id: Annotated[str, Path(pattern=_ID)],
    body: BroadcastCommandIn,
    principal: Commander,
    service: Service,
    request: Request,
    response: Response,
    wait: Wait = False,
) -> CommandOut:
    """Send a command to one unit; 202 with the command id, the outcome is recorded later."""
    try:
        record = await service.command_unit(
            unit_id,
            body,
            scope_paths=principal.scope_paths,
            actor=principal.actor,
            remote_addr=_remote_addr(principal, request),
        )
    except BroadcastUnavailable as exc:
        raise _unavailable(exc) from exc
    if record is None:
        raise not_found("broadcast unit")
    response.headers["Location"] = f"/api/broadcast/commands/{record.id}"
    if wait:
        (record,) = await _reread(service, [record], principal)
        response.status_code = status.HTTP_200_OK
    return CommandOut.of(record)


@router.post(
    "/zones/{zone}/commands",
    response_model=ZoneCommandsOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"description": "ended (with ?wait=true)"}, 404: {}, 503: {}},
)
async def command_zone(
    zone: Annotated[str, Path(pattern=_ZONE)],
    body: BroadcastCommandIn,
    principal: Commander,
    service: Service,
    request: Request,
    response: Response,
    wait: Wait = False,
) -> ZoneCommandsOut:
    """Send a command to every unit in the caller's scope tagged with `zone`."""
    try:
        records = await service.command_zone(
            zone,
            body,
            scope_paths=principal.scope_paths,
            actor=principal.actor,
            remote_addr=_remote_addr(principal, request),
        )
    except BroadcastUnavailable as exc:
        raise _unavailable(exc) from exc
    if not records:
        raise not_found("broadcast zone")
    if wait:
        records = await _reread(service, records, principal)
        response.status_code = status.HTTP_200_OK
    return ZoneCommandsOut(zone=zone, commands=[CommandOut.of(r) for r in records])


@router.get("/commands/{command_id}", response_model=CommandOut, responses={404: {}})
async def get_command(
    command_id: Annotated[str, Path(pattern=_ID)],
    principal: Reader,
    service: Service,
) -> CommandOut:
    """A command and its outcome (pending until the unit acked, failed or timed out)."""
    record = await service.get(command_id, principal.scope_paths)
    if record is None:
        raise not_found("broadcast command")
    return CommandOut.of(record)
