"""Catalog of GB/T 28181 devices: query, subscription, assembly, and registry devices.

A device's catalog arrives in pages (`SumNum` items over many MESSAGEs); once
complete it replaces the stored catalog, and every channel the registry does
not know yet is added under the device: kind from its GB/T 28181 type code,
jurisdiction from its civil code when that names a node of the tree (else the
longest prefix that does), name, manufacturer, model, address, position, and
tags `gb28181` and `gbparent:<parent id>`.

A channel the registry already has keeps what maintainers edited, except what
the device itself changes: when a catalog (answer or NOTIFY) reports a name,
address or position different from the one the device reported before, the
registry device takes the new value (audited as `system:gb28181`).

Catalog NOTIFYs (subscription, GB/T 28181-2016 §9.6.3 / 2022) apply per item:
ON/OFF/VLOST/DEFECT move the channel's health and its stored status (which
decides whether it comes back when its NVR does), ADD/UPDATE store it as
above, DEL removes it from the catalog and takes the registry device offline
("removed from its device's catalog"; maintainers decide whether to delete it).
Directory nodes (business groups, virtual organisations) are kept in the
catalog only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from adapters.gb28181 import manscdp
from camera_registry.gb28181 import GbId, is_gb_id
from camera_registry.models import Credentials, DeviceIn, DeviceKind
from hub.devices.registry import Actor
from hub.gb28181 import storage as repo
from hub.gb28181.outgoing import RequestTimeout

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["CatalogSync"]

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OFFLINE_EVENTS = {"OFF": "offline", "VLOST": "video lost", "DEFECT": "defect"}
#: Catalog fields a device may change on registry devices it reported before.
_FOLLOWED = ("name", "address", "latitude", "longitude")


def _clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    text = _CONTROL.sub(" ", value).strip()[:limit]
    return text or None


class CatalogSync:
    """Keeps the catalog and the registry's channel devices of every GB/T 28181 device."""

    def __init__(self, service: Gb28181Service) -> None:
        self._service = service
        self._assembler = manscdp.CatalogAssembler()

    async def register_device(
        self, device_id: str, *, credentials: Credentials | None = None, actor: Actor | None = None
    ) -> None:
        """Add a device that registered (auto_register) or was accepted to the registry."""
        from hub.gb28181.service import ACTOR, kind_of

        gb_id = GbId(device_id)
        jurisdiction = await self._jurisdiction_of([gb_id.center_code, gb_id.admin_division_code])
        device = DeviceIn(
            id=device_id,
            name=f"GB/T 28181 {device_id}",
            kind=kind_of(gb_id),
            jurisdiction=jurisdiction,
            tags=["gb28181"],
            credentials=credentials,
        )
        _, problems = await self._service._registry.bulk_upsert(
            [device], actor=actor or ACTOR, scope=None
        )
        if problems:
            raise ValueError(f"device {device_id} cannot be registered: {problems[device_id]}")

    async def query(self, device_id: str) -> bool:
        """Ask a device for its catalog and its identity; False when it did not take the query."""
        service = self._service
        try:
            answer = await service.send_manscdp(
                device_id, manscdp.catalog_query(service.next_sn(), device_id)
            )
            await service.send_manscdp(
                device_id, manscdp.device_info_query(service.next_sn(), device_id)
            )
        except (RequestTimeout, LookupError) as exc:
            log.warning("GB/T 28181: catalog query to %s failed: %s", device_id, exc)
            return False
        return answer.status == 200

    async def page(self, device_id: str, page: manscdp.CatalogPage, now: datetime) -> None:
        """One catalog MESSAGE (answer page) or NOTIFY (change) from `device_id`."""
        if page.notify and any(item.event for item in page.items):
            await self._changes(device_id, page.items, now)
            return
        try:
            catalog = self._assembler.add(page, now)
        except manscdp.ManscdpError as exc:
            log.warning("GB/T 28181: catalog of %s refused: %s", device_id, exc)
            return
        if catalog is not None:
            await self.apply(device_id, catalog.items, now, complete=True)

    async def _changes(
        self, device_id: str, items: Sequence[manscdp.CatalogItem], now: datetime
    ) -> None:
        health: list[tuple[str, bool, str]] = []
        statuses: list[tuple[str, str]] = []
        upserts: list[manscdp.CatalogItem] = []
        removed: list[str] = []
        for item in items:
            event = item.event or ""
            if event == "ON":
                health.append((item.device_id, True, "catalog notification: online"))
                statuses.append((item.device_id, "ON"))
            elif event in _OFFLINE_EVENTS:
                reason = f"catalog notification: {_OFFLINE_EVENTS[event]}"
                health.append((item.device_id, False, reason))
                statuses.append((item.device_id, event))
            elif event == "DEL":
                removed.append(item.device_id)
                health.append((item.device_id, False, f"removed from the catalog of {device_id}"))
            else:
                upserts.append(item)
        store = self._service._store
        if removed:
            await repo.remove_channels(store, device_id, removed)
        if statuses:
            await repo.record_channel_status(store, device_id, statuses, now)
        if upserts:
            await self.apply(device_id, upserts, now, complete=False)
        await self._service.channel_evidence(health, now)
        log.info(
            "GB/T 28181: catalog change of %s: %d status, %d added/updated, %d removed",
            device_id,
            len(statuses),
            len(upserts),
            len(removed),
        )

    async def _jurisdiction_of(self, candidates: Sequence[str | None]) -> str | None:
        registry = self._service._registry
        for code in candidates:
            if code and await registry.path_of(code) is not None:
                return code
        return None

    async def apply(
        self,
        device_id: str,
        items: Sequence[manscdp.CatalogItem],
        now: datetime,
        *,
        complete: bool,
    ) -> int:
        """Store catalog items and add unknown channels to the registry; returns devices added."""
        service = self._service
        resolved: dict[str, str | None] = {}
        new_devices: list[DeviceIn] = []
        changed: dict[str, dict[str, object]] = {}
        rows: list[repo.ChannelRow] = []
        health: list[tuple[str, bool, str]] = []
        before = {c.channel_id: c for c in await repo.list_channels(service._store, device_id)}
        for item in items:
            registrable = self._registrable(item)
            if registrable and service._registry.lookup_cached(item.device_id) is None:
                device = await self._device_for(device_id, item, resolved)
                if device is not None:
                    new_devices.append(device)
            elif registrable:
                change = _device_changes(before.get(item.device_id), item)
                if change:
                    changed[item.device_id] = change
            rows.append(
                repo.ChannelRow(
                    device_id=device_id,
                    channel_id=item.device_id,
                    parent_id=item.parent_id,
                    name=_clean(item.name, 128),
                    status=_clean(item.status, 16),
                    ptz_type=item.ptz_type,
                    civil_code=_clean(item.civil_code, 32),
                    registered=registrable,
                    info={**item.extra, **_reported(item)},
                    updated_at=now,
                )
            )
            if registrable and item.online is not None:
                health.append((item.device_id, item.online, f"catalog status {item.status}"))
        # Registry first: once the catalog is stored, its channels are devices.
        added = await self._add(new_devices)
        updated = await self._follow(changed)
        await repo.record_catalog(service._store, device_id, rows, complete=complete, now=now)
        await service.channel_evidence(health, now)
        log.info(
            "GB/T 28181: catalog of %s: %d entries, %d new registry devices, %d updated",
            device_id,
            len(rows),
            added,
            updated,
        )
        return added

    async def _follow(self, changed: dict[str, dict[str, object]]) -> int:
        """Registry devices take what their GB/T 28181 device changed (name, address, position)."""
        from hub.gb28181.service import ACTOR

        registry = self._service._registry
        devices: list[DeviceIn] = []
        for channel_id, change in changed.items():
            stored = await registry.get(channel_id, scope=None)
            if stored is None:
                continue
            current = DeviceIn.from_device(stored.device).model_dump()
            try:
                devices.append(DeviceIn.model_validate({**current, **change}))
            except ValidationError as exc:
                log.warning("GB/T 28181: change of %s not applied: %s", channel_id, exc)
        if not devices:
            return 0
        counts, problems = await registry.bulk_upsert(devices, actor=ACTOR, scope=None)
        for channel_id, reason in list(problems.items())[:5]:
            log.warning("GB/T 28181: change of %s not applied: %s", channel_id, reason)
        return counts.updated

    @staticmethod
    def _registrable(item: manscdp.CatalogItem) -> bool:
        if not is_gb_id(item.device_id):
            return False
        gb_id = GbId(item.device_id)
        return gb_id.device_kind not in (None, DeviceKind.PLATFORM)

    async def _device_for(
        self, device_id: str, item: manscdp.CatalogItem, resolved: dict[str, str | None]
    ) -> DeviceIn | None:
        from hub.gb28181.service import kind_of

        gb_id = GbId(item.device_id)
        candidates: list[str] = []
        code = (item.civil_code or "").strip()
        if code.isdigit():
            candidates += [code[:n] for n in (len(code), 12, 9, 8, 6) if n <= len(code)]
        candidates += [gb_id.center_code, gb_id.admin_division_code]
        key = "|".join(candidates)
        if key not in resolved:
            resolved[key] = await self._jurisdiction_of(list(dict.fromkeys(candidates)))
        parent = item.parent_id if item.parent_id and is_gb_id(item.parent_id) else device_id
        located = (
            item.latitude is not None
            and item.longitude is not None
            and (item.latitude, item.longitude) != (0.0, 0.0)
            and -90 <= item.latitude <= 90
            and -180 <= item.longitude <= 180
        )
        try:
            return DeviceIn(
                id=item.device_id,
                name=_clean(item.name, 128) or item.device_id,
                kind=kind_of(gb_id),
                jurisdiction=resolved[key],
                latitude=item.latitude if located else None,
                longitude=item.longitude if located else None,
                address=_clean(item.address, 256),
                vendor=_clean(item.manufacturer, 64),
                model=_clean(item.model, 64),
                tags=["gb28181", f"gbparent:{parent}"],
            )
        except ValidationError as exc:
            log.warning("GB/T 28181: channel %s not registered: %s", item.device_id, exc)
            return None

    async def _add(self, devices: list[DeviceIn]) -> int:
        from hub.gb28181.service import ACTOR

        registry = self._service._registry
        while devices:
            counts, problems = await registry.bulk_upsert(devices, actor=ACTOR, scope=None)
            if not problems:
                return counts.created
            for device_id, reason in list(problems.items())[:5]:
                log.warning("GB/T 28181: channel %s not registered: %s", device_id, reason)
            devices = [d for d in devices if d.id not in problems]
        return 0

    async def status(self, device_id: str, status: manscdp.DeviceStatus, now: datetime) -> None:
        """A DeviceStatus answer: the device's own online state."""
        if status.online is not None:
            reason = "DeviceStatus: " + ("online" if status.online else "offline")
            await self._service.channel_evidence([(device_id, status.online, reason)], now)

    async def info(self, device_id: str, info: manscdp.DeviceInfo, now: datetime) -> None:
        """A DeviceInfo answer: stored with the device's signalling state."""
        details = {
            "name": _clean(info.name, 128),
            "manufacturer": _clean(info.manufacturer, 64),
            "model": _clean(info.model, 64),
            "firmware": _clean(info.firmware, 64),
            "channels": info.channels,
        }
        await repo.record_device_info(self._service._store, device_id, details)


def _position(item: manscdp.CatalogItem) -> tuple[float, float] | None:
    if item.latitude is None or item.longitude is None:
        return None
    if (item.latitude, item.longitude) == (0.0, 0.0):
        return None
    if not (-90 <= item.latitude <= 90 and -180 <= item.longitude <= 180):
        return None
    return item.latitude, item.longitude


def _reported(item: manscdp.CatalogItem) -> dict[str, str]:
    """What the device reported of the followed fields, as stored with its catalog entry."""
    reported: dict[str, str] = {}
    name, address = _clean(item.name, 128), _clean(item.address, 256)
    if name:
        reported["name"] = name
    if address:
        reported["address"] = address
    position = _position(item)
    if position is not None:
        reported["latitude"], reported["longitude"] = (repr(v) for v in position)
    return reported


def _device_changes(before: repo.ChannelRow | None, item: manscdp.CatalogItem) -> dict[str, object]:
    """The registry fields the device changed since its previous report (none if first)."""
    if before is None:
        return {}
    now = _reported(item)
    change: dict[str, object] = {}
    for field in _FOLLOWED:
        value = now.get(field)
        previous = before.name if field == "name" else before.info.get(field)
        if value is None or previous is None or value == previous:
            continue
        change[field] = float(value) if field in ("latitude", "longitude") else value
    if "latitude" in change or "longitude" in change:
        change["latitude"] = float(now["latitude"])
        change["longitude"] = float(now["longitude"])
    return change
