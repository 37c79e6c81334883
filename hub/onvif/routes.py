"""ONVIF: probe a registered camera, its event channel health, discovery and onboarding.

Probing and onboarding are maintenance (and admin) actions; channel health is
also readable by operators. Every device route is scoped: a device outside the
caller's jurisdiction answers 404. A camera that fails (wrong login, no answer,
lies) answers 502 with a problem body whose `failure` says which.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import ValidationError

from adapters.onvif.models import ChannelHealth, ProbeFailure
from camera_registry.models import Credentials
from hub.api.deps import get_onvif
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.devices.registry import OutOfScope, RegistryConflict, UnknownJurisdiction
from hub.onvif.probes import (
    DiscoveredCamera,
    OnboardRequest,
    OnvifUnavailable,
    ProbeFailed,
    ProbeOutcome,
)
from hub.onvif.schemas import (
    CandidateOut,
    ChannelHealthOut,
    DeviceInformationOut,
    DeviceOnvifOut,
    DiscoveryOut,
    LastProbeOut,
    OnboardIn,
    ProbeOut,
    ProfileOut,
)
from hub.onvif.service import OnvifService

__all__ = ["router"]

router = APIRouter(tags=["onvif"])

Maintainer = Annotated[Principal, Depends(require(Role.MAINTENANCE))]
Reader = Annotated[Principal, Depends(require(Role.MAINTENANCE, Role.OPERATOR))]
Onvif = Annotated[OnvifService, Depends(get_onvif)]

_FAILURE_TITLES = {
    ProbeFailure.AUTH: "Camera refused the login",
    ProbeFailure.UNREACHABLE: "Camera unreachable",
    ProbeFailure.TIMEOUT: "Camera did not answer in time",
    ProbeFailure.PROTOCOL: "Camera answered with unusable ONVIF",
    ProbeFailure.REFUSED: "Camera pointed at a foreign host",
}
_PROBE_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "no such device within your jurisdiction"},
    409: {"description": "the device has no ONVIF address or no stored login"},
    502: {"description": "the camera failed; `failure` is auth/unreachable/timeout/…"},
}


def _actor(principal: Principal) -> str:
    return principal.actor


def _camera_problem(failure: ProbeFailure, detail: str, device_id: str | None) -> Problem:
    extra = {"failure": failure.value}
    if device_id is not None:
        extra["device_id"] = device_id
    return Problem(502, _FAILURE_TITLES[failure], detail, **extra)


def _probe_out(outcome: ProbeOutcome) -> ProbeOut:
    result = outcome.result
    if result is None:  # the service raises for every failed probe
        raise RuntimeError(f"probe of {outcome.device_id} has no result")
    profiles = [
        ProfileOut(
            token=p.token,
            name=p.name,
            encoding=p.encoding,
            width=p.width,
            height=p.height,
            frame_rate=p.frame_rate,
            bitrate_kbps=p.bitrate_kbps,
            video_source_token=p.video_source_token,
            stream_uri=p.stream_uri,
            snapshot_uri=p.snapshot_uri,
        )
        for p in result.profiles
    ]
    snapshots = [p.snapshot_uri for p in result.profiles if p.snapshot_uri]
    offset = result.clock_offset
    return ProbeOut(
        device_id=outcome.device_id,
        probed_at=result.probed_at,
        host=result.host,
        port=result.port,
        device=DeviceInformationOut(
            manufacturer=result.device.manufacturer,
            model=result.device.model,
            firmware_version=result.device.firmware_version,
            serial_number=result.device.serial_number,
            hardware_id=result.device.hardware_id,
        ),
        services=dict(result.services),
        profiles=profiles,
        stream_uris=list(dict.fromkeys(p.stream_uri for p in result.profiles if p.stream_uri)),
        snapshot_uri=snapshots[0] if snapshots else None,
        clock_offset_s=offset.total_seconds() if offset is not None else None,
        warnings=list(result.warnings),
        changed=sorted(outcome.changed),
    )


@router.post("/api/devices/{device_id}/probe", response_model=ProbeOut, responses=_PROBE_RESPONSES)
async def probe_device(device_id: str, principal: Maintainer, onvif: Onvif) -> ProbeOut:
    """Probe the camera now; store its model, profiles, stream and snapshot URIs on the device."""
    try:
        outcome = await onvif.probe_device(
            device_id,
            scope_paths=principal.scope_paths,
            actor=_actor(principal),
            remote_addr=principal.remote_addr,
        )
    except LookupError as exc:
        raise not_found("device") from exc
    except OnvifUnavailable as exc:
        raise Problem(409, "Cannot probe this device", str(exc)) from exc
    except ProbeFailed as exc:
        raise _camera_problem(exc.failure, str(exc), device_id) from exc
    return _probe_out(outcome)


def _seconds_since(now: datetime, at: datetime | None) -> float | None:
    return round((now - at).total_seconds(), 3) if at is not None else None


def _channel_out(health: ChannelHealth, now: datetime) -> ChannelHealthOut:
    age = health.subscription_age(now)
    offset = health.clock_offset
    return ChannelHealthOut(
        state=health.state,
        subscribed_since=health.subscribed_since,
        subscription_age_s=round(age.total_seconds(), 3) if age is not None else None,
        last_successful_pull=health.last_successful_pull,
        seconds_since_last_pull=_seconds_since(now, health.last_successful_pull),
        last_error=health.last_error,
        last_error_at=health.last_error_at,
        consecutive_failures=health.consecutive_failures,
        pulls=health.pulls,
        renewals=health.renewals,
        renew_failures=health.renew_failures,
        resubscriptions=health.resubscriptions,
        messages_total=health.messages_total,
        messages_per_topic=dict(health.messages_per_topic),
        unknown_topics=dict(health.unknown_topics),
        malformed_messages=health.malformed_messages,
        clock_offset_s=offset.total_seconds() if offset is not None else None,
    )


@router.get(
    "/api/devices/{device_id}/onvif",
    response_model=DeviceOnvifOut,
    responses={404: {"description": "no such device within your jurisdiction"}},
)
async def device_onvif(device_id: str, principal: Reader, onvif: Onvif) -> DeviceOnvifOut:
    """The device's ONVIF address, last probe and event channel health."""
    target = await onvif.device(device_id, principal.scope_paths)
    if target is None:
        raise not_found("device")
    health = onvif.channel_health(device_id)
    probe = await onvif.last_probe(device_id)
    now = onvif.now()
    return DeviceOnvifOut(
        device_id=device_id,
        onvif_url=target.onvif_url,
        has_credentials=target.has_credentials,
        events_running=onvif.events_running,
        event_channel=_channel_out(health, now) if health is not None else None,
        last_probe=(
            LastProbeOut(
                probed_at=probe.probed_at,
                ok=probe.ok,
                failure=probe.failure,
                error=probe.error,
                requested_by=probe.requested_by,
            )
            if probe is not None
            else None
        ),
    )


def _candidate_out(found: DiscoveredCamera) -> CandidateOut:
    c = found.candidate
    return CandidateOut(
        endpoint=c.endpoint,
        xaddrs=list(c.xaddrs),
        scopes=list(c.scopes),
        name=c.name,
        hardware=c.hardware,
        responder=c.responder,
        host=found.host,
        port=found.port,
        first_seen_at=found.first_seen_at,
        seen_at=found.seen_at,
        device_id=found.device_id,
    )


@router.get("/api/onvif/discovery", response_model=DiscoveryOut)
async def discovery(
    principal: Maintainer,
    onvif: Onvif,
    interface: Annotated[
        str, Query(description="IPv4 address of the hub's interface to probe from")
    ],
) -> DiscoveryOut:
    """WS-Discovery from one interface: cameras not registered yet (and those that are)."""
    try:
        address = ipaddress.IPv4Address(interface)
    except ValueError as exc:
        raise Problem(422, "Invalid request", "interface must be an IPv4 address") from exc
    try:
        found = await onvif.discover(str(address))
    except OSError as exc:
        raise Problem(
            422, "Cannot probe from this interface", f"{interface}: {exc.strerror or exc}"
        ) from exc
    return DiscoveryOut(
        interface=str(address),
        candidates=[_candidate_out(f) for f in found if f.device_id is None],
        registered=[_candidate_out(f) for f in found if f.device_id is not None],
    )


@router.post(
    "/api/onvif/discovery/onboard",
    response_model=ProbeOut,
    status_code=201,
    responses={
        403: {"description": "the jurisdiction is outside your scope"},
        409: {"description": "the device id is taken"},
        502: {"description": "the camera failed the probe; nothing was registered"},
    },
)
async def onboard(body: OnboardIn, principal: Maintainer, onvif: Onvif) -> ProbeOut:
    """Probe a discovered camera with the given login; if it answers, register it."""
    from adapters.onvif.client import ProbeError

    try:
        request = OnboardRequest(
            device_id=body.device_id,
            name=body.name,
            xaddr=body.xaddr,
            credentials=Credentials(username=body.username, password=body.password),
            jurisdiction=body.jurisdiction,
            project=body.project,
            endpoint=body.endpoint,
        )
        outcome = await onvif.onboard(
            request,
            scope_paths=principal.scope_paths,
            actor=_actor(principal),
            remote_addr=principal.remote_addr,
        )
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise Problem(422, "Invalid request", "the device is not valid", errors=errors) from exc
    except OnvifUnavailable as exc:
        raise Problem(422, "Invalid request", str(exc)) from exc
    except ProbeError as exc:
        raise _camera_problem(exc.failure, str(exc), None) from exc
    except OutOfScope as exc:
        raise Problem(403, "Forbidden", str(exc)) from exc
    except UnknownJurisdiction as exc:
        errors = [{"field": "body.jurisdiction", "message": str(exc)}]
        raise Problem(422, "Invalid request", str(exc), errors=errors) from exc
    except RegistryConflict as exc:
        raise Problem(409, "Device exists", str(exc)) from exc
    return _probe_out(outcome)
