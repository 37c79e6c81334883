"""MESSAGE and NOTIFY from GB/T 28181 devices: keepalives, catalog, status, info, alarms.

A sender must be registered (through any node; a registration made elsewhere
is taken in from the database); others get 403, which makes devices register.
Keepalives and other messages are health evidence for the node that holds the
device; every node stores the keepalive time, which the holding node consults
before it declares a device silent.

Each `Notify/Alarm` becomes a `gb28181.alarm.<type>` event; the device's 200
(and the `Response/Alarm`) is sent only after the event is committed, so an
alarm is never acknowledged and then lost.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from adapters.gb28181 import manscdp
from adapters.gb28181.sip import SipRequest, parse_name_addr
from adapters.gb28181.transport import Peer
from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from camera_registry.models import HealthState
from hub.gb28181 import storage as repo
from hub.gb28181.outgoing import RequestTimeout
from hub.storage import Tx

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["ALARM_KIND_PREFIX", "Messages", "record_alarm_times"]

ALARM_KIND_PREFIX = "gb28181.alarm."
_SEVERITY = {1: Severity.CRITICAL, 2: Severity.MAJOR, 3: Severity.WARNING, 4: Severity.INFO}

Key = tuple[str, str, str, str]


class Messages:
    """Handles the MANSCDP requests devices send."""

    def __init__(self, service: Gb28181Service, source: str) -> None:
        self._service = service
        self._source = source
        self.keepalives: dict[str, datetime] = {}

    async def handle(self, request: SipRequest, peer: Peer, key: Key) -> None:
        """One MESSAGE or NOTIFY."""
        service = self._service
        now = service._clock()
        device_id = parse_name_addr(request.header("from")).user
        session = await service.registrar.session(device_id, now)
        if session is None:
            # Unregistered senders are told to register (devices re-register on 403/401).
            service.reply(peer, request, 403, key=key)
            return
        try:
            message = manscdp.decode(request.body)
        except manscdp.ManscdpError as exc:
            service.reply(peer, request, 400, key=key)
            await service._submit(
                RejectedMessage(
                    time=now,
                    source=self._source,
                    origin=f"sip:{device_id}@{peer.host}",
                    reason=f"unusable MANSCDP body: {exc}"[:500],
                    payload=request.body[:4096],
                    device_id=device_id,
                ),
                None,
            )
            return
        self.keepalives[device_id] = now
        if isinstance(message, manscdp.AlarmNotify):
            await self._alarm(message, request, peer, key, device_id, session.version, now)
            return
        service.reply(peer, request, 200, key=key)
        if isinstance(message, manscdp.Keepalive):
            service.counters["keepalives"] += 1
            await self._alive(device_id, "GB/T 28181 keepalive", now)
        elif isinstance(message, manscdp.CatalogPage):
            await service.catalog.page(device_id, message, now)
        elif isinstance(message, manscdp.DeviceStatus):
            await service.catalog.status(device_id, message, now)
        elif isinstance(message, manscdp.DeviceInfo):
            await service.catalog.info(device_id, message, now)
        else:
            await self._alive(device_id, "GB/T 28181 message", now)

    async def _alive(self, device_id: str, reason: str, now: datetime) -> None:
        # One node decides a device's health: the one it registered through.
        if self._service.registrar.holds(device_id):
            await self._service.health.device(device_id, HealthState.ONLINE, reason, now)

    async def _alarm(
        self,
        alarm: manscdp.AlarmNotify,
        request: SipRequest,
        peer: Peer,
        key: Key,
        device_id: str,
        version: str | None,
        now: datetime,
    ) -> None:
        service = self._service
        service.counters["alarms"] += 1
        payload: dict[str, Any] = {
            "priority": alarm.priority,
            "method": alarm.method,
            "alarm_type": alarm.alarm_type,
            "type": alarm.kind.slug,
            "type_text": alarm.kind.text_en,
            "type_text_zh": alarm.kind.text_zh,
            "description": (alarm.description or "")[:500],
            "gb_device_id": device_id,
            "alarm_time": alarm.time.isoformat() if alarm.time else None,
            "event_type": alarm.event_type,
            "longitude": alarm.longitude,
            "latitude": alarm.latitude,
            "version": version,
        }
        event = DeviceEvent(
            time=now,
            device_id=alarm.device_id,
            kind=f"{ALARM_KIND_PREFIX}{alarm.kind.slug}",
            severity=_SEVERITY.get(alarm.priority, Severity.WARNING),
            source=self._source,
            payload=payload,
            dedup_key=f"gb28181:{device_id}:{request.call_id}:{request.header('cseq')}"[:200],
        )

        def committed() -> None:
            # Only now does the device hear that the platform has the alarm.
            service.reply(peer, request, 200, key=key)
            service.spawn(self._confirm_alarm(device_id, alarm))

        await service._submit(event, committed)
        await self._alive(device_id, "GB/T 28181 alarm message", now)

    async def _confirm_alarm(self, device_id: str, alarm: manscdp.AlarmNotify) -> None:
        with contextlib.suppress(RequestTimeout, LookupError):
            await self._service.send_manscdp(
                device_id, manscdp.alarm_response(alarm.sn, alarm.device_id), wait_s=4.0
            )


async def record_alarm_times(tx: Tx, events: list[DeviceEvent], source: str) -> None:
    """Writer hook: a device's last alarm time, in the alarm's own transaction."""
    latest: dict[str, datetime] = {}
    for event in events:
        if event.source == source and event.kind.startswith(ALARM_KIND_PREFIX):
            owner = str(event.payload.get("gb_device_id") or event.device_id)
            if owner not in latest or event.time > latest[owner]:
                latest[owner] = event.time
    for owner, at in latest.items():
        await repo.record_alarm_time(tx, owner, at)
