"""Device health: current state with the last probe explained, state counts, evidence snapshots.

Operators, maintenance staff and admins read; everything is scoped by the
caller's jurisdiction (a device or snapshot outside it answers 404).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from hub.api.deps import get_services, get_store
from hub.auth.guards import Principal, Role, not_found, require
from hub.devices.health_schemas import (
    DeviceHealthOut,
    HealthSummaryOut,
    LoginOut,
    SampleOut,
    TransitionOut,
    VerdictOut,
)
from hub.devices.health_storage import HealthRepository
from hub.storage import SqlStore

__all__ = ["evidence_url", "get_health_repository", "router"]

router = APIRouter(tags=["device health"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE))]


def get_health_repository(store: Annotated[SqlStore, Depends(get_store)]) -> HealthRepository:
    """The health repository over the hub's store."""
    return HealthRepository(store)


Repository = Annotated[HealthRepository, Depends(get_health_repository)]


def evidence_url(evidence_id: uuid.UUID | str | None) -> str | None:
    """Where an evidence snapshot is served."""
    return f"/api/media/evidence/{evidence_id}" if evidence_id else None


@router.get("/api/devices/{device_id}/health", response_model=DeviceHealthOut)
async def device_health(
    device_id: str,
    request: Request,
    principal: Reader,
    repository: Repository,
    transitions: Annotated[int, Query(ge=0, le=200, description="Recent transitions.")] = 20,
) -> DeviceHealthOut:
    """State, since when and why; the last probe with every verdict's number and threshold."""
    current = await repository.device_health(device_id, principal.scope_paths)
    if current is None:
        raise not_found("device")
    sample = await repository.last_sample(device_id)
    history = await repository.transitions(device_id, limit=transitions)
    registry = get_services(request).registry
    login = None
    if registry is not None and current.kind == "camera":
        login = LoginOut.model_validate(registry.logins.status(device_id).as_dict())
    return DeviceHealthOut(
        device_id=current.device_id,
        name=current.name,
        kind=current.kind,
        health=current.health,
        since=current.since,
        reason=current.reason,
        reason_code=current.reason_code,
        reason_params=current.reason_params,
        last_probe_at=current.last_probe_at,
        last_sample=(
            SampleOut(
                time=sample.time,
                ok=sample.ok,
                observed=sample.observed,
                failure=sample.failure,
                error=sample.error,
                url=sample.url,
                open_latency_ms=sample.open_latency_ms,
                codec=sample.codec,
                width=sample.width,
                height=sample.height,
                fps=sample.fps,
                frames=sample.frames,
                faults=sample.faults,
                verdicts=[VerdictOut.model_validate(v) for v in sample.verdicts],
                evidence_url=evidence_url(sample.evidence_id),
            )
            if sample is not None
            else None
        ),
        transitions=[
            TransitionOut(
                at=t.at,
                from_state=t.from_state,
                to_state=t.to_state,
                reason=t.reason,
                reason_code=t.reason_code,
                reason_params=t.reason_params,
                evidence_url=evidence_url(t.evidence.get("evidence_id")),
            )
            for t in history
        ],
        login=login,
    )


@router.get("/api/health/summary", response_model=HealthSummaryOut)
async def health_summary(
    principal: Reader,
    repository: Repository,
    jurisdiction: Annotated[
        str | None, Query(description="Jurisdiction code: count its subtree only.")
    ] = None,
    kind: Annotated[str | None, Query(description="Only devices of this kind.")] = None,
) -> HealthSummaryOut:
    """Device counts by health state (unknown, online, degraded, offline) within scope."""
    subtree = None
    if jurisdiction is not None:
        found = await repository.jurisdiction(jurisdiction)
        if found is None or not principal.can_see(found[1]):
            raise not_found("jurisdiction")
        subtree = found[1]
    counts = await repository.summary(principal.scope_paths, subtree, kind)
    by_state = {state: counts.get(state, 0) for state in ("online", "degraded", "offline")}
    by_state["unknown"] = counts.get("unknown", 0)
    for state, number in counts.items():
        by_state.setdefault(state, number)
    return HealthSummaryOut(
        jurisdiction=jurisdiction, total=sum(counts.values()), by_state=by_state
    )


@router.get(
    "/api/media/evidence/{evidence_id}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def evidence_snapshot(
    evidence_id: uuid.UUID, principal: Reader, repository: Repository
) -> Response:
    """The JPEG kept as evidence of a probe (404 outside the caller's jurisdiction)."""
    image = await repository.evidence(evidence_id, principal.scope_paths)
    if image is None:
        raise not_found("snapshot")
    return Response(
        image.data,
        media_type=image.content_type,
        headers={
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Last-Modified": image.taken_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        },
    )
