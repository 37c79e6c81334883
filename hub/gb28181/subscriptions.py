"""Arming and subscriptions: SetGuard, the alarm and catalog SUBSCRIBEs, and their renewal.

After every registration the device is armed (SetGuard and a `presence` alarm
subscription) and subscribed to catalog changes (`Catalog`). A subscription
lasts what the device granted in its 200 (`Expires`, which may be shorter than
asked — RFC 6665 §4.1.2.1), else what was asked (`gb28181.subscription_expires_s`).
Before it runs out the node watching the device (the one it registered
through, or the one a dead node's devices fall to) renews it inside the
subscription's dialog; a device that forgot the dialog (481, e.g. after a
reboot) or a node that never had it (restart, another node) subscribes anew.
Each subscription's end is stored, so a restarted node renews in time. An
alarm subscription that could not be renewed and a failed SetGuard leave the
device shown as not armed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from adapters.gb28181 import manscdp
from adapters.gb28181.sip import SipRequest, SipResponse, parse_name_addr
from hub.gb28181 import session_storage as sessions_repo
from hub.gb28181 import storage as repo
from hub.gb28181.outgoing import Dialog, RequestTimeout

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["ALARMS", "CATALOG", "Subscriptions"]

log = logging.getLogger(__name__)

_MANSCDP = "Application/MANSCDP+xml"
#: SIP event packages: catalog changes, and alarms (GB/T 28181 §9.11 uses `presence`).
CATALOG = "Catalog"
ALARMS = "presence"
_RETRY_AFTER_S = 5.0


@dataclass(slots=True)
class _Subscription:
    device_id: str
    event: str
    until: datetime
    granted_s: int
    dialog: Dialog | None
    retry_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.retry_at is not None:
            return now >= self.retry_at
        margin = max(1.0, min(self.granted_s / 3, 120.0))
        return now >= self.until - timedelta(seconds=margin)


def _granted(answer: SipResponse, asked: int) -> int:
    value = (answer.header("expires") or "").strip()
    if value.isdigit() and 0 < int(value) <= asked:
        return int(value)
    return asked


class Subscriptions:
    """The alarm and catalog subscriptions of the devices this node holds."""

    def __init__(self, service: Gb28181Service) -> None:
        self._service = service
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        self.counters = {"renewed": 0, "resubscribed": 0, "renewal_failures": 0}

    def until(self, device_id: str, event: str) -> datetime | None:
        """When the device's `event` subscription runs out, as this node knows it."""
        found = self._subscriptions.get((device_id, event))
        return found.until if found is not None else None

    def forget(self, device_id: str) -> None:
        """The device unregistered: its subscriptions ended with it."""
        for event in (CATALOG, ALARMS):
            self._subscriptions.pop((device_id, event), None)

    def restore(self, rows: list[sessions_repo.SessionRow]) -> None:
        """Stored subscriptions of devices this node watches: its own after a restart, or
        those of a node that is gone (renewed with a new dialog)."""
        for row in rows:
            if not self._service.watches(row.device_id) or (
                (row.device_id, CATALOG) in self._subscriptions
                or (row.device_id, ALARMS) in self._subscriptions
            ):
                continue
            for event, until in (
                (CATALOG, row.catalog_subscribed_until),
                (ALARMS, row.alarm_subscribed_until),
            ):
                if until is not None:
                    granted = self._service.settings.subscription_expires_s
                    self._subscriptions[(row.device_id, event)] = _Subscription(
                        row.device_id, event, until, granted, None
                    )

    async def subscribe(self, device_id: str, event: str, body: bytes) -> SipResponse:
        """SUBSCRIBE a registered device to `event`; store the subscription if accepted."""
        service = self._service
        session = await service.registrar.session(device_id, service._clock())
        if session is None:
            raise LookupError(f"device {device_id} is not registered")
        asked = service.settings.subscription_expires_s
        known = self._subscriptions.get((device_id, event))
        dialog = known.dialog if known is not None else None
        request = service.outgoing.build(
            "SUBSCRIBE",
            session.peer,
            device_id,
            body=body,
            content_type=_MANSCDP,
            extra=[("Event", event), ("Expires", str(asked))],
            dialog=dialog,
        )
        answer = await service.outgoing.send(request, session.peer)
        if answer.status == 481 and dialog is not None:
            # The device no longer knows the dialog (it restarted): a new subscription.
            dialog = None
            request = service.outgoing.build(
                "SUBSCRIBE",
                session.peer,
                device_id,
                body=body,
                content_type=_MANSCDP,
                extra=[("Event", event), ("Expires", str(asked))],
            )
            answer = await service.outgoing.send(request, session.peer)
        if answer.status != 200:
            return answer
        granted = _granted(answer, asked)
        until = service._clock() + timedelta(seconds=granted)
        self._subscriptions[(device_id, event)] = _Subscription(
            device_id, event, until, granted, _dialog_of(request, answer, dialog)
        )
        await sessions_repo.record_subscription(service._store, device_id, event, until)
        return answer

    async def arm(self, device_id: str) -> bool:
        """SetGuard and subscribe to alarms; store whether the device is armed."""
        service = self._service
        errors: list[str] = []
        armed = False
        try:
            answer = await service.send_manscdp(
                device_id, manscdp.set_guard(service.next_sn(), device_id)
            )
            if answer.status == 200:
                armed = True
            else:
                errors.append(f"SetGuard answered {answer.status} {answer.reason}")
        except (RequestTimeout, LookupError) as exc:
            errors.append(f"SetGuard: {exc}")
        self._subscriptions.pop((device_id, ALARMS), None)
        if await self._alarm_subscription(device_id, errors):
            armed = True
        await self._record_armed(device_id, armed, errors)
        return armed

    async def _alarm_subscription(self, device_id: str, errors: list[str]) -> bool:
        service = self._service
        try:
            answer = await self.subscribe(
                device_id, ALARMS, manscdp.alarm_subscription(service.next_sn(), device_id)
            )
        except (RequestTimeout, LookupError) as exc:
            errors.append(f"alarm subscription: {exc}")
            return False
        if answer.status != 200:
            errors.append(f"alarm subscription answered {answer.status} {answer.reason}")
            return False
        return True

    async def _record_armed(self, device_id: str, armed: bool, errors: list[str]) -> None:
        service = self._service
        session = service.sessions.get(device_id)
        if session is not None:
            session.armed = armed
        error = "; ".join(errors)[:500] or None
        await repo.record_armed(
            service._store, device_id, armed=armed, error=error, now=service._clock()
        )
        if not armed:
            log.warning("GB/T 28181: %s could not be armed: %s", device_id, error)

    async def catalog(self, device_id: str) -> bool:
        """Subscribe to the device's catalog changes (afresh)."""
        service = self._service
        self._subscriptions.pop((device_id, CATALOG), None)
        try:
            answer = await self.subscribe(
                device_id, CATALOG, manscdp.catalog_subscription(service.next_sn(), device_id)
            )
        except (RequestTimeout, LookupError) as exc:
            log.info("GB/T 28181: catalog subscription to %s failed: %s", device_id, exc)
            return False
        return answer.status == 200

    async def renew_due(self, now: datetime) -> None:
        """Renew the subscriptions of held devices that are about to run out."""
        service = self._service
        for key, subscription in list(self._subscriptions.items()):
            device_id, event = key
            if not service.watches(device_id):
                self._subscriptions.pop(key, None)
                continue
            if not subscription.due(now):
                continue
            body = (
                manscdp.catalog_subscription(service.next_sn(), device_id)
                if event == CATALOG
                else manscdp.alarm_subscription(service.next_sn(), device_id)
            )
            try:
                answer = await self.subscribe(device_id, event, body)
                failure = None if answer.status == 200 else f"{answer.status} {answer.reason}"
            except (RequestTimeout, LookupError) as exc:
                failure = str(exc)
            if failure is None:
                renewed = self._subscriptions.get(key)
                same_dialog = renewed is not None and renewed.dialog is subscription.dialog
                self.counters["renewed" if same_dialog else "resubscribed"] += 1
                continue
            self.counters["renewal_failures"] += 1
            log.warning("GB/T 28181: renewing %s subscription of %s: %s", event, device_id, failure)
            subscription.retry_at = now + timedelta(seconds=_RETRY_AFTER_S)
            if now >= subscription.until:
                await self._lapsed(subscription, failure, now)

    async def _lapsed(self, subscription: _Subscription, failure: str, now: datetime) -> None:
        service = self._service
        device_id, event = subscription.device_id, subscription.event
        self._subscriptions.pop((device_id, event), None)
        await sessions_repo.record_subscription(service._store, device_id, event, None)
        if event == ALARMS:
            row = await repo.load_device(service._store, device_id)
            guard_ok = row is not None and row.armed and row.arm_error is None
            if not guard_ok:
                await self._record_armed(
                    device_id, False, [f"alarm subscription ran out: {failure}"]
                )


def _dialog_of(request: SipRequest, answer: SipResponse, previous: Dialog | None) -> Dialog:
    if previous is not None:
        return previous
    number, _ = request.cseq
    return Dialog(
        call_id=request.call_id,
        local_tag=parse_name_addr(request.header("from")).tag or "",
        remote_tag=parse_name_addr(answer.header("to")).tag,
        request_uri=request.uri,
        to_uri=parse_name_addr(request.header("to")).uri,
        cseq=number,
    )
