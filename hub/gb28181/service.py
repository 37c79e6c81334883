"""The hub as a GB/T 28181 platform: one node's SIP side, assembled from its parts.

- **Registrar** (`registration`): REGISTER with MD5 digest; registrations are
  stored, so a restarted node or any other node on the database knows them.
- **Messages** (`messages`): keepalives, catalog, status, info, and alarms
  (acknowledged only after the alarm is committed).
- **Health** (`health`): keepalives and registrations through the one health
  state machine; silence for `keepalive_interval_s` × `keepalive_missed` (90 s on
  defaults) or a lapsed registration takes the device offline — and the
  channels of an NVR with it.
- **Catalog** (`catalog`): queried and subscribed to after every registration;
  pages assembled (`SumNum`); changes (NOTIFY) applied to the registry.
- **Arming and subscriptions** (`subscriptions`): SetGuard and the alarm and
  catalog subscriptions after every registration, renewed before they run out.
- **Media** (`media`): INVITE and the live-view player of a channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from pydantic import SecretStr

from adapters.gb28181.sip import SipParseError, SipRequest, SipResponse, response_to
from adapters.gb28181.transport import Peer, SipTransport
from camera_registry.events import DeviceEvent, RejectedMessage
from camera_registry.gb28181 import GbId, is_gb_id
from camera_registry.models import Credentials, HealthState
from hub.clock import utcnow
from hub.devices.registry import Actor, Registry
from hub.gb28181 import session_storage as sessions_repo
from hub.gb28181 import storage as repo
from hub.gb28181.catalog import CatalogSync
from hub.gb28181.config import Gb28181Settings
from hub.gb28181.health import GbHealth
from hub.gb28181.media import GB_URL_PREFIX, Media
from hub.gb28181.messages import Messages, record_alarm_times
from hub.gb28181.outgoing import Outgoing
from hub.gb28181.player import GbPlayer
from hub.gb28181.registrar import AnswerCache
from hub.gb28181.registration import DeviceSession, Registrar
from hub.gb28181.subscriptions import Subscriptions
from hub.storage import SqlStore, Tx

__all__ = ["SOURCE", "DeviceSession", "Gb28181Service", "kind_of"]

log = logging.getLogger(__name__)

SOURCE = "gb28181"
ACTOR = Actor("system:gb28181")
_MANSCDP = "Application/MANSCDP+xml"
_CHECK_EVERY_S = 1.0
_MAX_HANDLERS = 512

#: Hands an event (with its committed-callback) to the hub's writer.
Submit = Callable[[DeviceEvent | RejectedMessage, Callable[[], None] | None], Awaitable[None]]
Key = tuple[str, str, str, str]


class Gb28181Service:
    """The GB/T 28181 platform side of one hub node."""

    def __init__(
        self,
        settings: Gb28181Settings,
        *,
        store: SqlStore,
        registry: Registry,
        submit: Submit,
        node_id: str = "hub",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
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
        self.health = GbHealth(
            store=store,
            registry=registry,
            submit=submit,
            clock=clock,
            source=SOURCE,
            keepalive_interval_s=settings.keepalive_interval_s,
            keepalive_missed=settings.keepalive_missed,
        )
        self.registrar = Registrar(self)
        self.messages = Messages(self, SOURCE)
        self.subscriptions = Subscriptions(self)
        self.catalog = CatalogSync(self)
        self.media = Media(self)
        self._answers = AnswerCache()
        self._sn = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._refused_logged: dict[str, float] = {}
        # In a cluster: which devices of a node that is gone this node watches.
        self._is_mine: Callable[[str], bool] = lambda _: False
        self._is_alive: Callable[[str], bool] = lambda _: True
        self._reload_registrations = False
        # Keepalive times reach the database often enough for the holding node to
        # see them (through another node) well before it would call a device silent.
        self._flush_every_s = min(5.0, settings.offline_after_s / 3)
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

    @property
    def sessions(self) -> dict[str, DeviceSession]:
        """The registrations this node has in memory (a cache of the stored ones)."""
        return self.registrar.sessions

    async def start(self) -> None:
        """Load running registrations, bind the SIP port and start the watch."""
        if not self.settings.enabled:
            log.info("GB/T 28181 disabled (gb28181.enabled is false)")
            return
        now = self._clock()
        rows = await self.registrar.restore(now)
        self.subscriptions.restore(rows)
        self.health.resume(
            [
                (r.device_id, r.last_keepalive_at or r.registered_at)
                for r in rows
                if r.node_id == self.node_id
            ]
        )
        await self.transport.start(self.settings.sip_host, self.settings.sip_port)
        self._tasks.append(asyncio.create_task(self._watch(), name="gb28181-watch"))
        log.info(
            "GB/T 28181 platform %s (domain %s) on %s:%d UDP+TCP, node %s",
            self.settings.platform_id,
            self.settings.domain,
            self.settings.sip_host,
            self.port,
            self.node_id,
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
            self.reply(peer, message, 503, key=None)
            return
        self._answers.start(key)
        task = asyncio.create_task(self._handle(message, peer, key))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def reply(
        self,
        peer: Peer,
        request: SipRequest,
        status: int,
        *,
        key: Key | None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        """Answer a device's request (remembered for its retransmissions)."""
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

    async def _handle(self, request: SipRequest, peer: Peer, key: Key) -> None:
        try:
            if request.method == "REGISTER":
                await self.registrar.register(request, peer, key)
            elif request.method in ("MESSAGE", "NOTIFY"):
                await self.messages.handle(request, peer, key)
            elif request.method == "BYE" or request.method == "OPTIONS":
                self.reply(peer, request, 200, key=key)
            else:
                self.reply(
                    peer,
                    request,
                    405,
                    key=key,
                    headers=[("Allow", "REGISTER, MESSAGE, NOTIFY, BYE, OPTIONS")],
                )
        except SipParseError as exc:
            self._on_refused(peer, str(exc), b"")
            self.reply(peer, request, 400, key=key)
        except Exception:
            log.exception("GB/T 28181: handling %s from %s failed", request.method, peer.host)
            self.reply(peer, request, 500, key=key)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run a background step of this service (failures logged, cancelled at stop)."""

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

    _spawn = spawn

    async def after_registration(self, session: DeviceSession) -> None:
        """Arm, read the catalog and subscribe to its changes (after every registration)."""
        if self.settings.arm_on_register:
            await self.arm(session.device_id)
        if self.settings.catalog_on_register:
            await self.catalog.query(session.device_id)
            await self.subscriptions.catalog(session.device_id)

    # ------------------------------------------------------------------ outbound

    async def send_manscdp(
        self, device_id: str, body: bytes, *, wait_s: float = 8.0
    ) -> SipResponse:
        """Send a MANSCDP MESSAGE to a registered device; raises RequestTimeout/LookupError."""
        session = await self.registrar.session(device_id, self._clock())
        if session is None:
            raise LookupError(f"device {device_id} is not registered")
        request = self.outgoing.build(
            "MESSAGE", session.peer, device_id, body=body, content_type=_MANSCDP
        )
        return await self.outgoing.send(request, session.peer, wait_s=wait_s)

    async def subscribe(self, device_id: str, event: str, body: bytes) -> SipResponse:
        """SUBSCRIBE a registered device to an event package (Catalog, presence for alarms)."""
        return await self.subscriptions.subscribe(device_id, event, body)

    async def arm(self, device_id: str) -> bool:
        """SetGuard and subscribe to alarms; store whether the device is armed."""
        return await self.subscriptions.arm(device_id)

    # ------------------------------------------------------------------ maintenance

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

    async def registered_count(self) -> int:
        """Devices registered now, through any node."""
        return await sessions_repo.count_registered(self._store, self._clock())

    async def is_registered(self, device_id: str) -> bool:
        """True while the device's registration (through any node) holds."""
        return await self.registrar.session(device_id, self._clock()) is not None

    def now(self) -> datetime:
        """The service's clock."""
        return self._clock()

    async def channels(self, device_id: str) -> list[repo.ChannelRow]:
        """A device's catalog as last reported."""
        return await repo.list_channels(self._store, device_id)

    async def refuse(self, device_id: str) -> bool:
        """Forget a pending device (it stays refused and is listed again if it retries)."""
        return await repo.delete_pending(self._store, device_id)

    # ------------------------------------------------------------------ live video

    async def owner_of(self, channel_id: str) -> str | None:
        """The registered device a channel belongs to (a camera registers as its own)."""
        if await self.registrar.session(channel_id, self._clock()) is not None:
            return channel_id
        owner = await repo.channel_owner(self._store, channel_id)
        if owner is not None:
            await self.registrar.session(owner, self._clock())
        return owner

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

    async def in_transaction(self, tx: Tx, events: list[DeviceEvent]) -> None:
        """Writer hook: a device's last alarm time, in the alarm's own transaction."""
        await record_alarm_times(tx, events, SOURCE)

    # ------------------------------------------------------------------ health

    async def _watch(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(_CHECK_EVERY_S)
            try:
                now = self._clock()
                if time.monotonic() - last_flush >= self._flush_every_s:
                    await self._flush_keepalives()
                    last_flush = time.monotonic()
                await self.check_health(now)
                await self.subscriptions.renew_due(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("GB/T 28181: watch step failed; will retry")

    def use_assignment(
        self, is_mine: Callable[[str], bool], is_alive: Callable[[str], bool]
    ) -> None:
        """Watch, beside the devices registered here, those registered through a node
        that is no longer alive (`is_alive`) and that `is_mine` gives this node."""
        self._is_mine, self._is_alive = is_mine, is_alive

    def reassign(self) -> None:
        """The live nodes changed: re-read the registrations before the next check."""
        self._reload_registrations = True

    def watches(self, device_id: str) -> bool:
        """True when this node judges the device's keepalives."""
        session = self.sessions.get(device_id)
        if session is None:
            return False
        if session.node_id == self.node_id:
            return True
        orphan = session.node_id is not None and not self._is_alive(session.node_id)
        return orphan and self._is_mine(device_id)

    async def check_health(self, now: datetime) -> None:
        """Offline for watched devices that fell silent and for lapsed registrations.

        A keepalive another node stored counts before a device is called silent.
        """
        if self._reload_registrations:
            self._reload_registrations = False
            self.subscriptions.restore(await self.registrar.restore(now))
        await self.registrar.check_expiry(now)
        held = [d for d in self.sessions if self.watches(d)]
        silent = self.health.silent(held, now)
        if silent:
            elsewhere = await sessions_repo.keepalives_of(self._store, silent)
            for device_id, at in elsewhere.items():
                await self.health.device(
                    device_id, HealthState.ONLINE, "GB/T 28181 keepalive (another node)", at
                )
        await self.health.check_silence(held, now)

    async def _flush_keepalives(self) -> None:
        seen, self.messages.keepalives = self.messages.keepalives, {}
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
