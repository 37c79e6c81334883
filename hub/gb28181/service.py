"""The hub as a GB/T 28181 platform: registrar, keepalive health, catalog, alarms, arming.

- **Registrar**: REGISTER with MD5 digest. A device's password is its registry
  credentials (encrypted by `hub.crypto`), else the platform default
  (`gb28181.password`). A device the registry does not know registers only with
  `auto_register` (and is then added); otherwise it gets 403 and is listed as
  pending for a maintainer to accept. `Expires: 0` unregisters. Wrong passwords
  are budgeted per source address: a source over budget is ignored.
- **Health**: every keepalive (and any message) is evidence for the device's
  `HealthTracker`; silence for `keepalive_interval_s` × `keepalive_missed`
  (90 s on defaults) or a lapsed registration takes it offline. Transitions are
  stored in the health history and announced as `health.<state>` events.
- **Catalog**: queried and subscribed to after every registration; the pages of
  an answer are assembled (`SumNum`); new channels become registry devices
  under the device, in the jurisdiction their civil code names.
- **Alarms**: each `Notify/Alarm` becomes a `gb28181.alarm.<type>` event; the
  device's 200 (and the `Response/Alarm`) is sent only after the event is
  committed, so an alarm is never acknowledged and then lost.
- **Arming**: SetGuard and an alarm subscription after every registration; the
  outcome and the last alarm's time are stored per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from adapters.gb28181 import manscdp
from adapters.gb28181.digest import DigestError, challenge_header, parse_digest, verify
from adapters.gb28181.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    parse_name_addr,
    response_to,
)
from adapters.gb28181.transport import Peer, SipTransport
from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from camera_registry.gb28181 import GbId, is_gb_id
from camera_registry.models import Credentials, HealthState
from hub.clock import utcnow
from hub.devices.registry import Actor, Registry
from hub.gb28181 import storage as repo
from hub.gb28181.catalog import CatalogSync
from hub.gb28181.config import Gb28181Settings
from hub.gb28181.health import GbHealth
from hub.gb28181.media import GB_URL_PREFIX, Media
from hub.gb28181.outgoing import Outgoing, RequestTimeout
from hub.gb28181.player import GbPlayer
from hub.gb28181.registrar import AnswerCache, FailureBudget, NonceKeeper, requested_expires
from hub.storage import SqlStore, Tx

__all__ = ["SOURCE", "DeviceSession", "Gb28181Service"]

log = logging.getLogger(__name__)

SOURCE = "gb28181"
ACTOR = Actor("system:gb28181")
_MANSCDP = "Application/MANSCDP+xml"
_SEVERITY = {1: Severity.CRITICAL, 2: Severity.MAJOR, 3: Severity.WARNING, 4: Severity.INFO}
_CHECK_EVERY_S = 2.0
_FLUSH_EVERY_S = 5.0
_MAX_HANDLERS = 512

#: Hands an event (with its committed-callback) to the hub's writer.
Submit = Callable[[DeviceEvent | RejectedMessage, Callable[[], None] | None], Awaitable[None]]


@dataclass(slots=True)
class DeviceSession:
    """A registered device as the running hub keeps it."""

    device_id: str
    peer: Peer
    expires_at: datetime
    version: str | None
    registered_at: datetime
    armed: bool = False


class Gb28181Service:
    """The GB/T 28181 platform side of one hub node."""

    def __init__(
        self,
        settings: Gb28181Settings,
        *,
        store: SqlStore,
        registry: Registry,
        submit: Submit,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._store = store
        self._registry = registry
        self._submit = submit
        self._clock = clock
        self.transport = SipTransport(self._on_message, self._on_refused)
        self.outgoing = Outgoing(
            self.transport,
            platform_id=settings.platform_id,
            domain=settings.domain,
            host=settings.host_for_devices(),
        )
        self.sessions: dict[str, DeviceSession] = {}
        self.health = GbHealth(
            store=store,
            registry=registry,
            submit=submit,
            clock=clock,
            source=SOURCE,
            keepalive_interval_s=settings.keepalive_interval_s,
            keepalive_missed=settings.keepalive_missed,
        )
        self._nonces = NonceKeeper()
        self._budget = FailureBudget(settings.auth_failures_per_minute)
        self._answers = AnswerCache()
        self._keepalives: dict[str, datetime] = {}
        self._sn = 0
        self.catalog = CatalogSync(self)
        self.media = Media(self)
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._refused_logged: dict[str, float] = {}
        self.counters: dict[str, int] = {
            "refused_messages": 0,
            "auth_failures": 0,
            "ignored_over_budget": 0,
            "alarms": 0,
            "keepalives": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def enabled(self) -> bool:
        """True when this hub listens for GB/T 28181 devices."""
        return self.settings.enabled

    @property
    def port(self) -> int:
        """The SIP port bound (UDP and TCP); 0 before start."""
        return self.transport.udp_port

    async def start(self) -> None:
        """Bind the SIP port and start the health watch."""
        if not self.settings.enabled:
            log.info("GB/T 28181 disabled (gb28181.enabled is false)")
            return
        await self.transport.start(self.settings.sip_host, self.settings.sip_port)
        self._tasks.append(asyncio.create_task(self._watch(), name="gb28181-health"))
        log.info(
            "GB/T 28181 platform %s (domain %s) on %s:%d UDP+TCP",
            self.settings.platform_id,
            self.settings.domain,
            self.settings.sip_host,
            self.port,
        )

    async def stop(self) -> None:
        """Stop listening; keepalives seen so far are stored."""
        for task in self._tasks + list(self._handlers):
            task.cancel()
        for task in self._tasks + list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.media.close()
        await self.transport.stop()
        with contextlib.suppress(Exception):
            await self._flush_keepalives()

    def next_sn(self) -> int:
        """A fresh MANSCDP SN."""
        self._sn = (self._sn + 1) % 1_000_000_000
        return self._sn

    # ------------------------------------------------------------------ inbound

    def _on_refused(self, peer: Peer, reason: str, data: bytes) -> None:
        self.counters["refused_messages"] += 1
        now = time.monotonic()
        if now - self._refused_logged.get(peer.host, -60.0) >= 60.0:
            if len(self._refused_logged) > 4096:
                self._refused_logged.clear()
            self._refused_logged[peer.host] = now
            log.warning("GB/T 28181: refused a message from %s: %s", peer.host, reason)

    def _on_message(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        if isinstance(message, SipResponse):
            self.outgoing.received(message)
            return
        if message.method == "ACK":
            return
        key = AnswerCache.key(message, f"{peer.host}:{peer.port}")
        seen, answer = self._answers.seen(key)
        if seen:
            if answer is not None:
                self.transport.send(peer, answer)
            return  # still working on it: the answer goes out when ready
        if len(self._handlers) >= _MAX_HANDLERS:
            self._reply(peer, message, 503, key=None)
            return
        self._answers.start(key)
        task = asyncio.create_task(self._handle(message, peer, key))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _reply(
        self,
        peer: Peer,
        request: SipRequest,
        status: int,
        *,
        key: tuple[str, str, str, str] | None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        response = response_to(
            request,
            status,
            to_tag=secrets.token_hex(4),
            received=(peer.host, peer.port),
            headers=headers,
            body=body,
        )
        data = bytes(response)
        if key is not None:
            self._answers.answer(key, data)
        self.transport.send(peer, data)

    async def _handle(
        self, request: SipRequest, peer: Peer, key: tuple[str, str, str, str]
    ) -> None:
        try:
            if request.method == "REGISTER":
                await self._register(request, peer, key)
            elif request.method in ("MESSAGE", "NOTIFY"):
                await self._message(request, peer, key)
            elif request.method == "BYE" or request.method == "OPTIONS":
                self._reply(peer, request, 200, key=key)
            else:
                self._reply(
                    peer,
                    request,
                    405,
                    key=key,
                    headers=[("Allow", "REGISTER, MESSAGE, NOTIFY, BYE, OPTIONS")],
                )
        except SipParseError as exc:
            self._on_refused(peer, str(exc), b"")
            self._reply(peer, request, 400, key=key)
        except Exception:
            log.exception("GB/T 28181: handling %s from %s failed", request.method, peer.host)
            self._reply(peer, request, 500, key=key)

    # ------------------------------------------------------------------ registrar

    async def _register(
        self, request: SipRequest, peer: Peer, key: tuple[str, str, str, str]
    ) -> None:
        now = self._clock()
        if self._budget.exhausted(peer.host, time.monotonic()):
            self.counters["ignored_over_budget"] += 1
            return  # a flood of wrong passwords gets no answer at all
        device_id = parse_name_addr(request.header("from")).user
        if not is_gb_id(device_id):
            self._reply(peer, request, 400, key=key)
            return
        expires = requested_expires(request, self.settings.register_expires_max_s)
        if expires is None:
            self._reply(peer, request, 400, key=key)
            return
        known = self._registry.lookup_cached(device_id) is not None
        if not known and not self.settings.auto_register:
            self._budget.fail(peer.host, time.monotonic())
            await repo.record_attempt(
                self._store,
                device_id,
                host=peer.host,
                port=peer.port,
                transport=peer.transport,
                now=now,
            )
            log.info("GB/T 28181: unknown device %s from %s refused (listed)", device_id, peer.host)
            self._reply(peer, request, 403, key=key)
            return
        authorization = request.header("authorization")
        if authorization is None:
            self._challenge(request, peer, key, now)
            return
        try:
            credentials = parse_digest(authorization)
        except DigestError:
            self._reply(peer, request, 400, key=key)
            return
        if not self._nonces.valid(credentials.nonce, now):
            self._challenge(request, peer, key, now)
            return
        password = await self._password_of(device_id) if known else None
        if password is None and self.settings.password is not None:
            password = self.settings.password.get_secret_value()
        if password is None or not verify(credentials, method="REGISTER", password=password):
            self._budget.fail(peer.host, time.monotonic())
            self.counters["auth_failures"] += 1
            log.warning("GB/T 28181: wrong password from %s for %s", peer.host, device_id)
            self._reply(peer, request, 403, key=key)
            return
        self._budget.forgive(peer.host)
        if expires == 0:
            await self._unregister(device_id, now, "unregistered (Expires: 0)")
            self._reply(peer, request, 200, key=key, headers=[("Expires", "0")])
            return
        if expires < self.settings.register_expires_min_s:
            self._reply(
                peer,
                request,
                423,
                key=key,
                headers=[("Min-Expires", str(self.settings.register_expires_min_s))],
            )
            return
        granted = min(expires, self.settings.register_expires_max_s)
        if not known:
            await self.catalog.register_device(device_id)
        version = request.header("x-gb-ver")
        fresh = device_id not in self.sessions
        session = DeviceSession(device_id, peer, now + timedelta(seconds=granted), version, now)
        self.sessions[device_id] = session
        await repo.record_registration(
            self._store,
            device_id,
            transport=peer.transport,
            host=peer.host,
            port=peer.port,
            user_agent=(request.header("user-agent") or "")[:128] or None,
            version=version,
            expires_at=session.expires_at,
            now=now,
        )
        date = now.astimezone(manscdp.CHINA_TIME).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        self._reply(
            peer,
            request,
            200,
            key=key,
            headers=[
                (
                    "Contact",
                    request.header("contact") or f"<sip:{device_id}@{peer.host}:{peer.port}>",
                ),
                ("Expires", str(granted)),
                ("Date", date),
            ],
        )
        log.info(
            "GB/T 28181: %s %s from %s:%d (%s, %d s)",
            device_id,
            "registered" if fresh else "re-registered",
            peer.host,
            peer.port,
            peer.transport,
            granted,
        )
        await self.health.device(device_id, HealthState.ONLINE, "registered over GB/T 28181", now)
        self._spawn(self._after_registration(session))

    def _challenge(
        self, request: SipRequest, peer: Peer, key: tuple[str, str, str, str], now: datetime
    ) -> None:
        header = challenge_header(self.settings.domain, self._nonces.issue(now))
        self._reply(peer, request, 401, key=key, headers=[("WWW-Authenticate", header)])

    async def _password_of(self, device_id: str) -> str | None:
        credentials = await self._registry.credentials_for(device_id)
        return credentials.password.get_secret_value() if credentials is not None else None

    async def _unregister(self, device_id: str, now: datetime, reason: str) -> None:
        self.sessions.pop(device_id, None)
        await repo.record_unregistration(self._store, device_id, now)
        # Unregistering is conclusive (the policy takes one failure to offline).
        await self.health.device(device_id, HealthState.OFFLINE, reason, now)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("GB/T 28181: background step failed")

        task = asyncio.create_task(run())
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _after_registration(self, session: DeviceSession) -> None:
        if self.settings.arm_on_register:
            await self.arm(session.device_id)
        if self.settings.catalog_on_register:
            await self.catalog.query(session.device_id)
            await self.catalog.subscribe(session.device_id)

    async def send_manscdp(
        self, device_id: str, body: bytes, *, wait_s: float = 8.0
    ) -> SipResponse:
        """Send a MANSCDP MESSAGE to a registered device; raises RequestTimeout/LookupError."""
        session = self.sessions.get(device_id)
        if session is None:
            raise LookupError(f"device {device_id} is not registered")
        request = self.outgoing.build(
            "MESSAGE", session.peer, device_id, body=body, content_type=_MANSCDP
        )
        return await self.outgoing.send(request, session.peer, wait_s=wait_s)

    async def subscribe(self, device_id: str, event: str, body: bytes) -> SipResponse:
        """SUBSCRIBE a registered device to an event package (Catalog, presence for alarms)."""
        session = self.sessions.get(device_id)
        if session is None:
            raise LookupError(f"device {device_id} is not registered")
        request = self.outgoing.build(
            "SUBSCRIBE",
            session.peer,
            device_id,
            body=body,
            content_type=_MANSCDP,
            extra=[("Event", event), ("Expires", str(self.settings.subscription_expires_s))],
        )
        return await self.outgoing.send(request, session.peer)

    async def arm(self, device_id: str) -> bool:
        """SetGuard and subscribe to alarms; store whether the device is armed."""
        errors: list[str] = []
        armed = False
        try:
            answer = await self.send_manscdp(
                device_id, manscdp.set_guard(self.next_sn(), device_id)
            )
            if answer.status == 200:
                armed = True
            else:
                errors.append(f"SetGuard answered {answer.status} {answer.reason}")
        except (RequestTimeout, LookupError) as exc:
            errors.append(f"SetGuard: {exc}")
        try:
            answer = await self.subscribe(
                device_id, "presence", manscdp.alarm_subscription(self.next_sn(), device_id)
            )
            if answer.status == 200:
                armed = True
            else:
                errors.append(f"alarm subscription answered {answer.status} {answer.reason}")
        except (RequestTimeout, LookupError) as exc:
            errors.append(f"alarm subscription: {exc}")
        session = self.sessions.get(device_id)
        if session is not None:
            session.armed = armed
        error = "; ".join(errors)[:500] or None
        await repo.record_armed(self._store, device_id, armed=armed, error=error, now=self._clock())
        if not armed:
            log.warning("GB/T 28181: %s could not be armed: %s", device_id, error)
        return armed

    async def accept(self, device_id: str, *, password: str | None, actor: Actor) -> None:
        """A maintainer accepts a device that was refused: it joins the registry.

        With `password` the device gets its own (stored encrypted as its registry
        credentials); without, it uses the platform default. Raises ValueError
        for an id that is not a GB/T 28181 code or a device already registered.
        """
        if not is_gb_id(device_id):
            raise ValueError(f"{device_id!r} is not a GB/T 28181 id")
        if self._registry.lookup_cached(device_id) is not None:
            raise ValueError(f"device {device_id} is already in the registry")
        credentials = (
            Credentials(username=device_id, password=SecretStr(password))
            if password is not None
            else None
        )
        await self.catalog.register_device(device_id, credentials=credentials, actor=actor)
        await repo.accept_pending(self._store, device_id)

    async def devices(self, *, pending: bool | None = None) -> list[repo.GbDeviceRow]:
        """Stored GB/T 28181 devices (only pending ones, only accepted ones, or all)."""
        return await repo.list_devices(self._store, pending=pending)

    async def device(self, device_id: str) -> repo.GbDeviceRow | None:
        """One stored GB/T 28181 device."""
        return await repo.load_device(self._store, device_id)

    async def channels(self, device_id: str) -> list[repo.ChannelRow]:
        """A device's catalog as last reported."""
        return await repo.list_channels(self._store, device_id)

    async def refuse(self, device_id: str) -> bool:
        """Forget a pending device (it stays refused and is listed again if it retries)."""
        return await repo.delete_pending(self._store, device_id)

    async def owner_of(self, channel_id: str) -> str | None:
        """The registered device a channel belongs to (a camera registers as its own)."""
        if channel_id in self.sessions:
            return channel_id
        return await repo.channel_owner(self._store, channel_id)

    async def live_source(self, device_id: str) -> str | None:
        """The live-view source URL of a GB/T 28181 channel (None: not one)."""
        if not self.enabled or not is_gb_id(device_id):
            return None
        owner = await self.owner_of(device_id)
        return f"{GB_URL_PREFIX}{device_id}" if owner is not None else None

    def open_player(self, url: str, passthrough: bool) -> GbPlayer | None:
        """The live-view relay's player for a `gb28181://<channel>` URL (else None):
        H.264 passed through when `passthrough`, else decoded pictures."""
        if not url.startswith(GB_URL_PREFIX):
            return None
        return GbPlayer(self.media, url[len(GB_URL_PREFIX) :], passthrough=passthrough)

    # ------------------------------------------------------------------ MESSAGE / NOTIFY

    async def _message(
        self, request: SipRequest, peer: Peer, key: tuple[str, str, str, str]
    ) -> None:
        now = self._clock()
        device_id = parse_name_addr(request.header("from")).user
        if device_id not in self.sessions:
            # Unregistered senders are told to register (devices re-register on 403/401).
            self._reply(peer, request, 403, key=key)
            return
        try:
            message = manscdp.decode(request.body)
        except manscdp.ManscdpError as exc:
            self._reply(peer, request, 400, key=key)
            await self._submit(
                RejectedMessage(
                    time=now,
                    source=SOURCE,
                    origin=f"sip:{device_id}@{peer.host}",
                    reason=f"unusable MANSCDP body: {exc}"[:500],
                    payload=request.body[:4096],
                    device_id=device_id,
                ),
                None,
            )
            return
        self._keepalives[device_id] = now
        if isinstance(message, manscdp.AlarmNotify):
            await self._alarm(message, request, peer, key, device_id, now)
            return
        self._reply(peer, request, 200, key=key)
        if isinstance(message, manscdp.Keepalive):
            self.counters["keepalives"] += 1
            state = HealthState.ONLINE
            await self.health.device(device_id, state, "GB/T 28181 keepalive", now)
        elif isinstance(message, manscdp.CatalogPage):
            await self.catalog.page(device_id, message, now)
        elif isinstance(message, manscdp.DeviceStatus):
            await self.catalog.status(device_id, message, now)
        elif isinstance(message, manscdp.DeviceInfo):
            await self.catalog.info(device_id, message, now)
        else:
            await self.health.device(device_id, HealthState.ONLINE, "GB/T 28181 message", now)

    async def _alarm(
        self,
        alarm: manscdp.AlarmNotify,
        request: SipRequest,
        peer: Peer,
        key: tuple[str, str, str, str],
        device_id: str,
        now: datetime,
    ) -> None:
        self.counters["alarms"] += 1
        session = self.sessions.get(device_id)
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
            "version": session.version if session else None,
        }
        event = DeviceEvent(
            time=now,
            device_id=alarm.device_id,
            kind=f"gb28181.alarm.{alarm.kind.slug}",
            severity=_SEVERITY.get(alarm.priority, Severity.WARNING),
            source=SOURCE,
            payload=payload,
            dedup_key=f"gb28181:{device_id}:{request.call_id}:{request.header('cseq')}"[:200],
        )

        def committed() -> None:
            # Only now does the device hear that the platform has the alarm.
            self._reply(peer, request, 200, key=key)
            self._spawn(self._confirm_alarm(device_id, alarm))

        await self._submit(event, committed)
        await self.health.device(device_id, HealthState.ONLINE, "GB/T 28181 alarm message", now)

    async def _confirm_alarm(self, device_id: str, alarm: manscdp.AlarmNotify) -> None:
        with contextlib.suppress(RequestTimeout, LookupError):
            await self.send_manscdp(
                device_id, manscdp.alarm_response(alarm.sn, alarm.device_id), wait_s=4.0
            )

    async def in_transaction(self, tx: Tx, events: list[DeviceEvent]) -> None:
        """Writer hook: a device's last alarm time, in the alarm's own transaction."""
        latest: dict[str, datetime] = {}
        for event in events:
            if event.source == SOURCE and event.kind.startswith("gb28181.alarm."):
                owner = str(event.payload.get("gb_device_id") or event.device_id)
                if owner not in latest or event.time > latest[owner]:
                    latest[owner] = event.time
        for owner, at in latest.items():
            await repo.record_alarm_time(tx, owner, at)

    # ------------------------------------------------------------------ health

    async def _watch(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(_CHECK_EVERY_S)
            try:
                await self.check_health(self._clock())
                if time.monotonic() - last_flush >= _FLUSH_EVERY_S:
                    await self._flush_keepalives()
                    last_flush = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("GB/T 28181: health check failed; will retry")

    async def check_health(self, now: datetime) -> None:
        """Offline for silent devices and lapsed registrations."""
        for device_id, session in list(self.sessions.items()):
            if session.expires_at <= now:
                await self._unregister(device_id, now, "registration expired without renewal")
        await self.health.check_silence(list(self.sessions), now)

    async def _flush_keepalives(self) -> None:
        seen, self._keepalives = self._keepalives, {}
        await repo.record_keepalive(self._store, list(seen.items()))

    def health_of(self, device_id: str) -> HealthState | None:
        """The in-memory health of a device or channel (None: no evidence on this node)."""
        return self.health.state_of(device_id)

    async def channel_evidence(self, items: Sequence[tuple[str, bool, str]], now: datetime) -> None:
        """Channel health from catalog/status: (channel id, online, reason) each."""
        await self.health.channels(items, now)


def kind_of(gb_id: GbId) -> str:
    """The registry kind for a GB/T 28181 id (front-end main devices are NVR-like)."""
    implied = gb_id.device_kind
    if implied is not None:
        return implied.value
    return "nvr" if gb_id.type_code <= 130 else "camera"
