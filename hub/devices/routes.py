"""/api/devices: the device registry (CRUD, bulk upsert, listing, import/export, linkage).

Read: operator, maintenance, dispatcher (and admin). Write: maintenance (and admin).
Devices outside the caller's jurisdiction scope answer 404 like missing ones;
writing a device into a node outside the scope answers 403 (the caller named
the node, so nothing about other devices leaks). Credentials are accepted on
write and never returned: responses carry only `has_credentials`.
"""

from __future__ import annotations

import logging
from email import policy
from email.parser import BytesParser
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from camera_registry.gb28181 import GbId
from camera_registry.importer import MAX_IMPORT_BYTES, template_csv, template_xlsx
from camera_registry.models import DeviceKind, HealthState
from hub.api.deps import get_registry
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, client_addr, not_found, require
from hub.devices.registry import (
    Actor,
    OutOfScope,
    Registry,
    RegistryConflict,
    UnknownJurisdiction,
)
from hub.devices.schemas import (
    BulkIn,
    BulkOut,
    DeviceOut,
    DevicePageOut,
    DeviceWrite,
    ImportErrorOut,
    ImportOut,
    NearbyCameraOut,
    NearbyOut,
    NextIdOut,
    SortField,
    device_out,
)
from hub.devices.storage import CursorError, DeviceFilter

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/devices", tags=["devices"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE, Role.DISPATCHER))]
Writer = Annotated[Principal, Depends(require(Role.MAINTENANCE))]
RegistryDep = Annotated[Registry, Depends(get_registry)]

# Multipart framing around a file is small; anything beyond this is refused unread.
_BODY_SLACK = 1_000_000
_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor(principal.actor, client_addr(request))


async def device_filter(
    registry: RegistryDep,
    kind: Annotated[list[DeviceKind] | None, Query(description="one or more kinds")] = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    jurisdiction: Annotated[
        str | None, Query(max_length=32, description="node code: the node and all under it")
    ] = None,
    enabled: bool | None = None,
    health: HealthState | None = None,
    q: Annotated[
        str | None, Query(max_length=64, description="text in the name, address or id")
    ] = None,
) -> DeviceFilter:
    """The listing filter from query parameters (an unknown jurisdiction code is a 422)."""
    subtree = None
    if jurisdiction is not None:
        subtree = await registry.path_of(jurisdiction.upper())
        if subtree is None:
            raise Problem(
                422,
                "Invalid request",
                "1 field(s) are invalid",
                errors=[{"field": "query.jurisdiction", "message": "unknown jurisdiction code"}],
            )
    return DeviceFilter(
        kinds=tuple(k.value for k in kind or ()),
        project=project,
        subtree=subtree,
        enabled=enabled,
        health=health.value if health is not None else None,
        text=q or None,
    )


Filter = Annotated[DeviceFilter, Depends(device_filter)]


@router.get("", response_model=DevicePageOut)
async def list_devices(
    principal: Reader,
    registry: RegistryDep,
    flt: Filter,
    sort: SortField = "id",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> DevicePageOut:
    """A page of devices in the caller's scope; follow `next_cursor` for more."""
    try:
        page = await registry.list_devices(
            flt,
            scope=principal.scope_paths,
            sort=sort,
            descending=order == "desc",
            limit=limit,
            cursor=cursor,
        )
    except CursorError as exc:
        raise Problem(
            422,
            "Invalid request",
            "1 field(s) are invalid",
            errors=[{"field": "query.cursor", "message": str(exc)}],
        ) from exc
    return DevicePageOut(items=[device_out(i) for i in page.items], next_cursor=page.next_cursor)


@router.get("/export")
async def export_devices(
    principal: Reader,
    registry: RegistryDep,
    flt: Filter,
    format: Literal["csv", "xlsx"] = "csv",
    lang: Literal["zh", "en"] = "zh",
) -> Response:
    """The filtered devices as a CSV or XLSX sheet in the import format (no credentials)."""
    data = await registry.export(flt, scope=principal.scope_paths, fmt=format, lang=lang)
    return Response(
        data,
        media_type=_CONTENT_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="devices.{format}"'},
    )


@router.get("/import-template")
async def import_template(
    principal: Reader,
    format: Literal["csv", "xlsx"] = "xlsx",
    lang: Literal["zh", "en"] = "zh",
) -> Response:
    """An empty import sheet with the headers in Chinese or English."""
    data = template_xlsx(lang) if format == "xlsx" else template_csv(lang)
    return Response(
        data,
        media_type=_CONTENT_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="devices-template.{format}"'},
    )


@router.get("/next-id", response_model=NextIdOut)
async def next_id(
    principal: Writer,
    registry: RegistryDep,
    jurisdiction: Annotated[str, Query(max_length=32)],
    type_code: Annotated[int, Query(ge=111, le=999)] = 132,
    industry: Annotated[str, Query(pattern=r"^\d{2}$")] = "00",
    network: Annotated[int, Query(ge=0, le=9)] = 0,
) -> NextIdOut:
    """The lowest free GB/T 28181 id under a jurisdiction's center code for a type."""
    node = await registry.jurisdiction(jurisdiction.upper(), scope=principal.scope_paths)
    if node is None:
        raise not_found("jurisdiction")
    try:
        gb_id: GbId = await registry.next_gb_id(
            node[0].code, type_code, industry=industry, network=network
        )
    except ValueError as exc:
        raise Problem(422, "No GB/T 28181 id", str(exc)) from exc
    return NextIdOut(id=gb_id.value)


async def _read_upload(request: Request) -> bytes:
    """The uploaded file: a multipart `file` field, or the raw body."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_IMPORT_BYTES + _BODY_SLACK:
            raise Problem(
                413, "File too large", f"imports are limited to {MAX_IMPORT_BYTES:,} bytes"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                body = payload if isinstance(payload, bytes) else b""
                break
        else:
            raise Problem(
                422,
                "Invalid request",
                "1 field(s) are invalid",
                errors=[{"field": "body.file", "message": "a file field is required"}],
            )
    if len(body) >= MAX_IMPORT_BYTES:
        raise Problem(413, "File too large", f"imports are limited to {MAX_IMPORT_BYTES:,} bytes")
    return body


@router.post("/import", response_model=ImportOut)
async def import_devices(
    request: Request,
    principal: Writer,
    registry: RegistryDep,
    dry_run: bool = False,
    partial: bool = False,
) -> ImportOut:
    """Import a CSV/XLSX sheet (multipart `file` or raw body).

    `dry_run=true` reports every bad row and writes nothing. A real import with
    any bad row writes nothing and answers 422 with the rows, unless
    `partial=true` (the good rows are written, the bad ones reported).
    """
    data = await _read_upload(request)
    outcome = await registry.import_file(
        data,
        actor=_actor(principal, request),
        scope=principal.scope_paths,
        dry_run=dry_run,
        partial=partial,
    )
    errors = [
        ImportErrorOut(row=e.row, column=e.column, value=e.value, reason=e.reason)
        for e in outcome.errors
    ]
    if outcome.errors and not dry_run and not partial:
        raise Problem(
            422,
            "Import refused",
            f"{len({e.row for e in outcome.errors})} row(s) have errors; nothing was written",
            errors=[e.model_dump() for e in errors],
        )
    return ImportOut(
        dry_run=dry_run,
        written=outcome.written,
        format=outcome.format,
        encoding=outcome.encoding,
        rows=outcome.rows,
        created=outcome.counts.created,
        updated=outcome.counts.updated,
        unchanged=outcome.counts.unchanged,
        errors=errors,
    )


@router.post("/bulk", response_model=BulkOut)
async def bulk_upsert(
    request: Request, body: BulkIn, principal: Writer, registry: RegistryDep
) -> BulkOut:
    """Create or update devices by id, all or nothing; unchanged devices are left alone."""
    counts, problems = await registry.bulk_upsert(
        [d.fields() for d in body.devices],
        actor=_actor(principal, request),
        scope=principal.scope_paths,
        dry_run=body.dry_run,
    )
    if problems:
        index = {d.id: i for i, d in enumerate(body.devices)}
        raise Problem(
            422,
            "Invalid request",
            f"{len(problems)} device(s) refused; nothing was written",
            errors=[
                {"field": f"body.devices.{index.get(device_id, 0)}", "message": reason}
                for device_id, reason in problems.items()
            ],
        )
    return BulkOut(
        created=counts.created,
        updated=counts.updated,
        unchanged=counts.unchanged,
        dry_run=body.dry_run,
    )


def _write_problem(exc: Exception) -> Problem:
    if isinstance(exc, OutOfScope):
        return Problem(403, "Forbidden", str(exc))
    if isinstance(exc, UnknownJurisdiction):
        return Problem(
            422,
            "Invalid request",
            "1 field(s) are invalid",
            errors=[{"field": "body.jurisdiction", "message": str(exc)}],
        )
    return Problem(409, "Conflict", str(exc))


@router.post("", response_model=DeviceOut, status_code=201)
async def create_device(
    request: Request, body: DeviceWrite, principal: Writer, registry: RegistryDep
) -> DeviceOut:
    """Register a device (409 if the id exists)."""
    try:
        stored = await registry.create(
            body.fields(), actor=_actor(principal, request), scope=principal.scope_paths
        )
    except (OutOfScope, UnknownJurisdiction, RegistryConflict) as exc:
        raise _write_problem(exc) from exc
    return device_out(stored)


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, principal: Reader, registry: RegistryDep) -> DeviceOut:
    """One device (404 when missing or outside the caller's scope)."""
    stored = await registry.get(device_id, scope=principal.scope_paths)
    if stored is None:
        raise not_found("device")
    return device_out(stored)


@router.put("/{device_id}", response_model=DeviceOut)
async def update_device(
    request: Request,
    device_id: str,
    body: DeviceWrite,
    principal: Writer,
    registry: RegistryDep,
) -> DeviceOut:
    """Replace a device's fields; credentials are kept unless given or cleared."""
    if body.id != device_id:
        raise Problem(
            422,
            "Invalid request",
            "1 field(s) are invalid",
            errors=[{"field": "body.id", "message": "must equal the id in the path"}],
        )
    try:
        stored = await registry.update(
            body.fields(),
            actor=_actor(principal, request),
            scope=principal.scope_paths,
            clear_credentials=body.clear_credentials,
        )
    except (OutOfScope, UnknownJurisdiction, RegistryConflict) as exc:
        raise _write_problem(exc) from exc
    if stored is None:
        raise not_found("device")
    return device_out(stored)


@router.delete("/{device_id}", status_code=204)
async def delete_device(
    request: Request, device_id: str, principal: Writer, registry: RegistryDep
) -> Response:
    """Remove a device and its state."""
    gone = await registry.delete(
        device_id, actor=_actor(principal, request), scope=principal.scope_paths
    )
    if not gone:
        raise not_found("device")
    return Response(status_code=204)


@router.get("/{device_id}/nearby-cameras", response_model=NearbyOut)
async def nearby_cameras(
    device_id: str,
    principal: Reader,
    registry: RegistryDep,
    radius_m: Annotated[float | None, Query(gt=0, le=50_000)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> NearbyOut:
    """The device's linked cameras, and the nearest enabled cameras within the radius."""
    stored = await registry.get(device_id, scope=principal.scope_paths)
    if stored is None:
        raise not_found("device")
    radius = registry.linkage_radius_m if radius_m is None else radius_m
    try:
        found = await registry.nearby_cameras(
            device_id, scope=principal.scope_paths, radius_m=radius, limit=limit
        )
    except ValueError as exc:
        raise Problem(409, "No position", str(exc)) from exc
    return NearbyOut(
        linked_cameras=list(stored.device.linked_cameras),
        radius_m=radius,
        nearby=[NearbyCameraOut(id=i, name=n, distance_m=round(d, 1)) for i, n, d in found or []],
    )
