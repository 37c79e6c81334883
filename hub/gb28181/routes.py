"""GB/T 28181: platform status, devices (registered and pending), accept/refuse, arm, catalog.

Reading is for maintenance and operators; accepting, refusing, arming and
re-reading the catalog are maintenance actions. A device outside the caller's
jurisdiction answers 404; pending devices (not in the registry yet) are seen
only by callers whose scope is everything.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from hub.api.deps import get_gb28181, get_registry
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.devices.registry import Actor, Registry
from hub.gb28181 import storage as repo
from hub.gb28181.schemas import (
    AcceptIn,
    ChannelOut,
    GbDeviceDetailOut,
    GbDeviceOut,
    GbStatusOut,
)
from hub.gb28181.service import Gb28181Service

__all__ = ["router"]

router = APIRouter(prefix="/api/gb28181", tags=["gb28181"])

Maintainer = Annotated[Principal, Depends(require(Role.MAINTENANCE))]
Reader = Annotated[Principal, Depends(require(Role.MAINTENANCE, Role.OPERATOR))]
Gb = Annotated[Gb28181Service, Depends(get_gb28181)]
Devices = Annotated[Registry, Depends(get_registry)]


def _visible(principal: Principal, registry: Registry, device_id: str) -> bool:
    cached = registry.lookup_cached(device_id)
    if cached is None:
        return principal.sees_everything
    return principal.can_see(cached.jurisdiction_path)


def _out(service: Gb28181Service, row: repo.GbDeviceRow) -> GbDeviceOut:
    health = service.health_of(row.device_id)
    return GbDeviceOut(
        device_id=row.device_id,
        pending=row.pending,
        registered=row.registered(service.now()),
        health=health.value if health is not None else None,
        transport=row.transport,
        host=row.host,
        port=row.port,
        version=row.version,
        user_agent=row.user_agent,
        first_seen_at=row.first_seen_at,
        last_attempt_at=row.last_attempt_at,
        attempts=row.attempts,
        registered_at=row.registered_at,
        expires_at=row.expires_at,
        last_keepalive_at=row.last_keepalive_at,
        armed=row.armed,
        armed_at=row.armed_at,
        arm_error=row.arm_error,
        last_alarm_at=row.last_alarm_at,
        catalog_at=row.catalog_at,
        channel_count=row.channel_count,
        info=row.info,
        contact=row.contact,
        node_id=row.node_id,
        catalog_subscribed_until=row.catalog_subscribed_until,
        alarm_subscribed_until=row.alarm_subscribed_until,
    )


@router.get("/status", response_model=GbStatusOut)
async def status(principal: Reader, service: Gb) -> GbStatusOut:
    """Whether the platform listens, where, and how many devices are registered."""
    settings = service.settings
    return GbStatusOut(
        enabled=settings.enabled,
        platform_id=settings.platform_id,
        domain=settings.domain,
        sip_port=service.port,
        auto_register=settings.auto_register,
        registered=await service.registered_count(),
        counters=dict(service.counters),
    )


@router.get("/devices", response_model=list[GbDeviceOut])
async def devices(
    principal: Reader,
    service: Gb,
    registry: Devices,
    pending: Annotated[bool | None, Query(description="Only pending (true) or accepted")] = None,
) -> list[GbDeviceOut]:
    """GB/T 28181 devices with registration, keepalive, arming and last alarm."""
    rows = await service.devices(pending=pending)
    return [_out(service, r) for r in rows if _visible(principal, registry, r.device_id)]


@router.get("/devices/{device_id}", response_model=GbDeviceDetailOut)
async def device(
    device_id: str, principal: Reader, service: Gb, registry: Devices
) -> GbDeviceDetailOut:
    """One device and its catalog."""
    row = await service.device(device_id)
    if row is None or not _visible(principal, registry, device_id):
        raise not_found("GB/T 28181 device")
    channels = await service.channels(device_id)
    return GbDeviceDetailOut(
        **_out(service, row).model_dump(),
        channels=[
            ChannelOut(
                channel_id=c.channel_id,
                parent_id=c.parent_id,
                name=c.name,
                status=c.status,
                ptz_type=c.ptz_type,
                civil_code=c.civil_code,
                registered=c.registered,
                updated_at=c.updated_at,
            )
            for c in channels
        ],
    )


@router.post("/devices/{device_id}/accept", status_code=204)
async def accept(device_id: str, body: AcceptIn, principal: Maintainer, service: Gb) -> None:
    """Accept a refused device: it joins the registry and may register."""
    if not principal.sees_everything:
        raise not_found("GB/T 28181 device")
    password = body.password.get_secret_value() if body.password is not None else None
    try:
        await service.accept(
            device_id,
            password=password,
            actor=Actor(principal.actor, principal.remote_addr),
        )
    except ValueError as exc:
        raise Problem(409, "Cannot accept the device", str(exc)) from exc


@router.delete("/devices/{device_id}/pending", status_code=204)
async def refuse(device_id: str, principal: Maintainer, service: Gb) -> None:
    """Forget a pending device."""
    if not principal.sees_everything or not await service.refuse(device_id):
        raise not_found("pending GB/T 28181 device")


async def _registered(
    device_id: str, principal: Principal, service: Gb28181Service, registry: Registry
) -> None:
    if not _visible(principal, registry, device_id):
        raise not_found("GB/T 28181 device")
    if not await service.is_registered(device_id):
        raise Problem(409, "Device not registered", f"{device_id} is not registered now")


@router.post("/devices/{device_id}/arm", response_model=GbDeviceOut)
async def arm(device_id: str, principal: Maintainer, service: Gb, registry: Devices) -> GbDeviceOut:
    """Arm the device again (SetGuard and alarm subscription)."""
    await _registered(device_id, principal, service, registry)
    await service.arm(device_id)
    row = await service.device(device_id)
    if row is None:
        raise not_found("GB/T 28181 device")
    return _out(service, row)


@router.post("/devices/{device_id}/catalog", status_code=202)
async def catalog(device_id: str, principal: Maintainer, service: Gb, registry: Devices) -> None:
    """Ask the device for its catalog again (the answer arrives asynchronously)."""
    await _registered(device_id, principal, service, registry)
    if not await service.catalog.query(device_id):
        raise Problem(502, "Device did not take the query", f"{device_id} refused or timed out")
