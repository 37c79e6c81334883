"""The registrar of the GB/T 28181 platform: REGISTER with digest, and who is registered.

A device's password is its registry credentials (encrypted by `hub.crypto`),
else the platform default (`gb28181.password`). A device the registry does not
know registers only with `auto_register` (and is then added); otherwise it gets
403 and is listed as pending for a maintainer to accept. `Expires: 0`
unregisters. Wrong passwords are budgeted per source address: a source over
budget is ignored.

Registrations live in the database (`session_storage`), so a node started
again, or any other node on the same database, knows who is registered until
the registration runs out. Each node keeps the sessions it has heard of in
memory as a cache: those left from before a restart are loaded at start, and a
device registered through another node is taken in at its first message here.
The node a device registered through *holds* it: that node watches its
keepalives and expiry and renews its subscriptions.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from adapters.gb28181 import manscdp
from adapters.gb28181.digest import DigestError, challenge_header, parse_digest, verify
from adapters.gb28181.sip import SipRequest, parse_name_addr
from adapters.gb28181.transport import Peer
from camera_registry.gb28181 import is_gb_id
from camera_registry.models import HealthState
from hub.gb28181 import session_storage as sessions_repo
from hub.gb28181 import storage as repo
from hub.gb28181.registrar import FailureBudget, NonceKeeper, requested_expires

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["DeviceSession", "Registrar"]

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]
_ABSENT_FOR_S = 1.0
_ABSENT_MAX = 4096


@dataclass(slots=True)
class DeviceSession:
    """A registered device as a node keeps it."""

    device_id: str
    peer: Peer
    expires_at: datetime
    version: str | None
    registered_at: datetime
    armed: bool = False
    node_id: str | None = None
    contact: str | None = None

    @classmethod
    def from_row(cls, row: sessions_repo.SessionRow) -> DeviceSession:
        """The session a stored registration describes."""
        return cls(
            device_id=row.device_id,
            peer=Peer(row.transport, row.host, row.port),
            expires_at=row.expires_at,
            version=row.version,
            registered_at=row.registered_at,
            armed=row.armed,
            node_id=row.node_id,
            contact=row.contact,
        )


class Registrar:
    """REGISTER handling and the registrations a node knows of."""

    def __init__(self, service: Gb28181Service) -> None:
        self._service = service
        self.sessions: dict[str, DeviceSession] = {}
        self._nonces = NonceKeeper()
        self._budget = FailureBudget(service.settings.auth_failures_per_minute)
        # Ids found unregistered a moment ago: a flood of messages from an unregistered
        # sender costs one database read a second, not one per message.
        self._absent: OrderedDict[str, float] = OrderedDict()

    @property
    def node_id(self) -> str:
        """This node's id (stable across restarts)."""
        return self._service.node_id

    def holds(self, device_id: str) -> bool:
        """True when the device registered through this node."""
        session = self.sessions.get(device_id)
        return session is not None and session.node_id == self.node_id

    async def restore(self, now: datetime) -> list[sessions_repo.SessionRow]:
        """Load every registration still running (after a restart, or from other nodes)."""
        rows = await sessions_repo.registered_sessions(self._service._store, now)
        for row in rows:
            self.sessions[row.device_id] = DeviceSession.from_row(row)
        if rows:
            held = sum(1 for row in rows if row.node_id == self.node_id)
            log.info(
                "GB/T 28181: %d registrations still running (%d through this node)",
                len(rows),
                held,
            )
        return rows

    async def session(self, device_id: str, now: datetime) -> DeviceSession | None:
        """The device's running registration: from memory, else from the database."""
        session = self.sessions.get(device_id)
        if session is not None and session.expires_at > now:
            return session
        checked = self._absent.get(device_id)
        if checked is not None and time.monotonic() - checked < _ABSENT_FOR_S:
            return None
        row = await sessions_repo.load_session(self._service._store, device_id, now)
        if row is None:
            self._absent[device_id] = time.monotonic()
            self._absent.move_to_end(device_id)
            if len(self._absent) > _ABSENT_MAX:
                self._absent.popitem(last=False)
            return None
        session = self.sessions[device_id] = DeviceSession.from_row(row)
        log.info(
            "GB/T 28181: %s is registered through node %s until %s; taken in here",
            device_id,
            row.node_id,
            row.expires_at.isoformat(),
        )
        return session

    # ------------------------------------------------------------------ REGISTER

    async def register(self, request: SipRequest, peer: Peer, key: Key) -> None:
        """Answer a REGISTER: challenge, verify, record, then arm and read the catalog."""
        service = self._service
        settings = service.settings
        now = service._clock()
        if self._budget.exhausted(peer.host, time.monotonic()):
            service.counters["ignored_over_budget"] += 1
            return  # a flood of wrong passwords gets no answer at all
        device_id = parse_name_addr(request.header("from")).user
        if not is_gb_id(device_id):
            service.reply(peer, request, 400, key=key)
            return
        expires = requested_expires(request, settings.register_expires_max_s)
        if expires is None:
            service.reply(peer, request, 400, key=key)
            return
        known = service._registry.lookup_cached(device_id) is not None
        if not known and not settings.auto_register:
            self._budget.fail(peer.host, time.monotonic())
            await repo.record_attempt(
                service._store,
                device_id,
                host=peer.host,
                port=peer.port,
                transport=peer.transport,
                now=now,
            )
            log.info("GB/T 28181: unknown device %s from %s refused (listed)", device_id, peer.host)
            service.reply(peer, request, 403, key=key)
            return
        authorization = request.header("authorization")
        if authorization is None:
            self._challenge(request, peer, key, now)
            return
        try:
            credentials = parse_digest(authorization)
        except DigestError:
            service.reply(peer, request, 400, key=key)
            return
        if not self._nonces.valid(credentials.nonce, now):
            self._challenge(request, peer, key, now)
            return
        password = await self._password_of(device_id) if known else None
        if password is None and settings.password is not None:
            password = settings.password.get_secret_value()
        if password is None or not verify(credentials, method="REGISTER", password=password):
            self._budget.fail(peer.host, time.monotonic())
            service.counters["auth_failures"] += 1
            log.warning("GB/T 28181: wrong password from %s for %s", peer.host, device_id)
            service.reply(peer, request, 403, key=key)
            return
        self._budget.forgive(peer.host)
        if expires == 0:
            await self.unregister(device_id, now, "unregistered (Expires: 0)")
            service.reply(peer, request, 200, key=key, headers=[("Expires", "0")])
            return
        if expires < settings.register_expires_min_s:
            service.reply(
                peer,
                request,
                423,
                key=key,
                headers=[("Min-Expires", str(settings.register_expires_min_s))],
            )
            return
        granted = min(expires, settings.register_expires_max_s)
        contact = (request.header("contact") or "")[:256] or None
        version = request.header("x-gb-ver")
        fresh = device_id not in self.sessions
        session = DeviceSession(
            device_id,
            peer,
            now + timedelta(seconds=granted),
            version,
            now,
            node_id=self.node_id,
            contact=contact,
        )
        self.sessions[device_id] = session
        self._absent.pop(device_id, None)
        await sessions_repo.record_registration(
            service._store,
            device_id,
            transport=peer.transport,
            host=peer.host,
            port=peer.port,
            contact=contact,
            user_agent=(request.header("user-agent") or "")[:128] or None,
            version=version,
            expires_at=session.expires_at,
            node_id=self.node_id,
            now=now,
        )
        date = now.astimezone(manscdp.CHINA_TIME).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        service.reply(
            peer,
            request,
            200,
            key=key,
            headers=[
                ("Contact", contact or f"<sip:{device_id}@{peer.host}:{peer.port}>"),
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
        service.spawn(self._welcome(session, added=not known, now=now))

    async def _welcome(self, session: DeviceSession, *, added: bool, now: datetime) -> None:
        """After the 200: add a new device to the registry, mark it online, then arm it
        and read its catalog.

        The registry write waits its turn behind catalog pages of other devices, so it
        is not part of the REGISTER transaction: a device waiting for its answer
        retransmits, and a district's devices starting together would time out.
        """
        service = self._service
        device_id = session.device_id
        if added:
            try:
                await service.catalog.register_device(device_id)
            except ValueError as exc:
                log.error("GB/T 28181: %s registered but was not added: %s", device_id, exc)
                if self.sessions.get(device_id) is session:
                    await self.unregister(device_id, now, f"not added to the registry: {exc}")
                return
        if self.sessions.get(device_id) is not session:
            return  # unregistered or registered again meanwhile: that one is welcomed
        await service.health.device(
            device_id, HealthState.ONLINE, "registered over GB/T 28181", now
        )
        await service.after_registration(session)

    def _challenge(self, request: SipRequest, peer: Peer, key: Key, now: datetime) -> None:
        header = challenge_header(self._service.settings.domain, self._nonces.issue(now))
        self._service.reply(peer, request, 401, key=key, headers=[("WWW-Authenticate", header)])

    async def _password_of(self, device_id: str) -> str | None:
        credentials = await self._service._registry.credentials_for(device_id)
        return credentials.password.get_secret_value() if credentials is not None else None

    async def unregister(self, device_id: str, now: datetime, reason: str) -> None:
        """The registration ends: stored, and the device goes offline with its channels."""
        # Stored first: a lookup meanwhile must not take the ending registration back in.
        await sessions_repo.record_unregistration(self._service._store, device_id, now)
        self.sessions.pop(device_id, None)
        self._service.subscriptions.forget(device_id)
        # Unregistering is conclusive (the policy takes one failure to offline), and it is
        # taken at the time it is applied: evidence stamped while this REGISTER was being
        # checked (a keepalive) must not make it look late and leave the device online.
        applied = max(now, self._service._clock())
        await self._service.health.device(device_id, HealthState.OFFLINE, reason, applied)

    async def check_expiry(self, now: datetime) -> None:
        """End the lapsed registrations this node watches (unless renewed through another
        node): its own, and those of a node that is gone that fall to this node.

        Sessions of other live nodes that lapsed are only dropped from memory.
        """
        for device_id, session in list(self.sessions.items()):
            if session.expires_at > now:
                continue
            row = await sessions_repo.load_session(self._service._store, device_id, now)
            if row is not None:
                self.sessions[device_id] = DeviceSession.from_row(row)  # renewed elsewhere
            elif self._service.watches(device_id):
                await self.unregister(device_id, now, "registration expired without renewal")
            else:
                self.sessions.pop(device_id, None)
