"""ONVIF storage: which cameras to talk to, probe results, device identity, discovery candidates.

The cameras are the device storage's `OnvifTarget` projection (the `devices` table's
one owner); the functions here hand it on under the names the ONVIF service uses.

A probe's outcome is written in one transaction: the `onvif_probes` row, the
device's identity and media addresses (vendor, model, firmware, serial,
`rtsp_urls`, `snapshot_url`) when they changed, and the audit rows (the probe
itself, and the device change with the names of the changed fields). Nothing
stored here carries credentials: the probe result's URIs are pinned and
stripped by the adapter before they arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.auth import audit_storage as audit
from hub.devices import storage as devices_repo
from hub.devices.storage import OnvifTarget
from hub.storage.base import Json, SqlStore, Tx, from_json, from_ts, to_db_time

__all__ = [
    "CandidateRow",
    "DeviceIdentity",
    "OnvifTarget",
    "ProbeRow",
    "event_channel_targets",
    "latest_probe",
    "load_target",
    "mark_candidate_onboarded",
    "onvif_addresses",
    "record_probe",
    "registry_fingerprint",
    "upsert_candidates",
]

_EPOCH = datetime.min.replace(tzinfo=UTC)
_TEXT64 = 64  # the registry's limit for vendor / model / firmware / serial
_MAX_RTSP_URLS = 16  # the registry's limit for a device's stream list


async def registry_fingerprint(store: SqlStore) -> tuple[object, ...]:
    """A value that changes whenever an ONVIF camera is added, changed or removed."""
    return await devices_repo.onvif_fingerprint(store)


async def load_target(
    store: SqlStore, device_id: str, scope_paths: Sequence[str] | None = None
) -> OnvifTarget | None:
    """One device within the caller's jurisdiction scope (None: missing or out of scope)."""
    return await devices_repo.onvif_target(store, device_id, scope_paths)


async def event_channel_targets(store: SqlStore) -> list[OnvifTarget]:
    """Every enabled device with an ONVIF address and a stored login."""
    return await devices_repo.onvif_event_targets(store)


async def onvif_addresses(store: SqlStore) -> dict[str, str]:
    """Every registered ONVIF address (as stored) → device id."""
    return await devices_repo.onvif_addresses(store)


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a successful probe says the device is and where its media lives."""

    vendor: str | None
    model: str | None
    firmware: str | None
    serial: str | None
    rtsp_urls: tuple[str, ...]
    snapshot_url: str | None

    def __post_init__(self) -> None:
        for name in ("vendor", "model", "firmware", "serial"):
            value = getattr(self, name)
            if value is not None:
                cleaned = " ".join(value.split())[:_TEXT64] or None
                object.__setattr__(self, name, cleaned)
        object.__setattr__(self, "rtsp_urls", tuple(dict.fromkeys(self.rtsp_urls))[:_MAX_RTSP_URLS])

    def changes_from(self, target: OnvifTarget) -> dict[str, Any]:
        """Fields whose value differs from the device's stored one (None keeps the stored one)."""
        changed: dict[str, Any] = {}
        for name in ("vendor", "model", "firmware", "serial", "snapshot_url"):
            value = getattr(self, name)
            if value is not None and value != getattr(target, name):
                changed[name] = value
        if self.rtsp_urls and self.rtsp_urls != target.rtsp_urls:
            changed["rtsp_urls"] = list(self.rtsp_urls)
        return changed


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One stored probe of a device."""

    id: int
    device_id: str
    probed_at: datetime
    requested_by: str
    ok: bool
    failure: str | None
    error: str | None
    result: Mapping[str, Any]


async def record_probe(
    store: SqlStore,
    *,
    device_id: str,
    actor: str,
    probed_at: datetime,
    ok: bool,
    failure: str | None,
    error: str | None,
    result: Mapping[str, Any],
    identity: DeviceIdentity | None = None,
    remote_addr: str | None = None,
) -> dict[str, Any]:
    """Store a probe, apply a successful probe's identity to the device; return what changed.

    One transaction: the probe row, the device update (only the fields that
    differ) and the audit rows commit together.
    """
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO onvif_probes"
            " (device_id, probed_at, requested_by, ok, failure, error, result)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                device_id,
                to_db_time(probed_at),
                actor,
                ok,
                failure,
                error,
                dict(result),
            ),
        )
        changed: dict[str, Any] = {}
        if identity is not None:
            changed = await _apply_identity(tx, device_id, identity, probed_at)
        details: dict[str, Any] = {"ok": ok}
        if failure is not None:
            details["failure"] = failure
        await audit.record(tx, actor, "device.probe", device_id, remote_addr, details, at=probed_at)
        if changed:
            await audit.record(
                tx,
                actor,
                "device.update",
                device_id,
                remote_addr,
                {"source": "onvif_probe", "changed": sorted(changed)},
                at=probed_at,
            )
    return changed


async def _apply_identity(
    tx: Tx, device_id: str, identity: DeviceIdentity, at: datetime
) -> dict[str, Any]:
    target = await devices_repo.onvif_target_in(tx, device_id)
    if target is None:
        return {}
    changed = identity.changes_from(target)
    await devices_repo.apply_probed_fields(tx, device_id, changed, at)
    return changed


async def latest_probe(store: SqlStore, device_id: str) -> ProbeRow | None:
    """The newest stored probe of a device."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT id, device_id, probed_at, requested_by, ok, failure, error, result"
            " FROM onvif_probes WHERE device_id = %s ORDER BY probed_at DESC, id DESC LIMIT 1",
            (device_id,),
        )
    if row is None:
        return None
    return ProbeRow(
        id=int(row[0]),
        device_id=str(row[1]),
        probed_at=from_ts(row[2]) or _EPOCH,
        requested_by=str(row[3]),
        ok=bool(row[4]),
        failure=row[5],
        error=row[6],
        result=from_json(row[7]) or {},
    )


@dataclass(frozen=True, slots=True)
class CandidateRow:
    """A device that answered WS-Discovery, as stored."""

    endpoint: str
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...]
    responder: str | None
    interface: str | None
    first_seen_at: datetime
    seen_at: datetime
    device_id: str | None


async def upsert_candidates(
    store: SqlStore,
    candidates: Sequence[tuple[str, Sequence[str], Sequence[str], str | None]],
    *,
    interface: str,
    seen_at: datetime,
) -> list[CandidateRow]:
    """Record (endpoint, xaddrs, scopes, responder) answers; return their stored rows."""
    at = to_db_time(seen_at)
    async with store.transaction() as tx:
        for endpoint, xaddrs, scopes, responder in candidates:
            await tx.execute(
                "INSERT INTO discovery_candidates"
                " (endpoint, xaddrs, scopes, responder, interface, first_seen_at, seen_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (endpoint) DO UPDATE SET xaddrs = EXCLUDED.xaddrs,"
                " scopes = EXCLUDED.scopes, responder = EXCLUDED.responder,"
                " interface = EXCLUDED.interface, seen_at = EXCLUDED.seen_at",
                (
                    endpoint,
                    Json(list(xaddrs)),
                    Json(list(scopes)),
                    responder,
                    interface,
                    at,
                    at,
                ),
            )
        rows: list[CandidateRow] = []
        for endpoint, *_ in candidates:
            row = await tx.fetchone(
                "SELECT endpoint, xaddrs, scopes, responder, interface, first_seen_at,"
                " seen_at, device_id FROM discovery_candidates WHERE endpoint = %s",
                (endpoint,),
            )
            if row is not None:
                rows.append(
                    CandidateRow(
                        endpoint=str(row[0]),
                        xaddrs=tuple(str(x) for x in from_json(row[1]) or []),
                        scopes=tuple(str(s) for s in from_json(row[2]) or []),
                        responder=row[3],
                        interface=row[4],
                        first_seen_at=from_ts(row[5]) or _EPOCH,
                        seen_at=from_ts(row[6]) or _EPOCH,
                        device_id=row[7],
                    )
                )
    return rows


async def mark_candidate_onboarded(store: SqlStore, endpoint: str, device_id: str) -> None:
    """Remember which device a discovery candidate became (no-op for unknown endpoints)."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE discovery_candidates SET device_id = %s WHERE endpoint = %s",
            (device_id, endpoint),
        )
