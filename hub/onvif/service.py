"""ONVIF in the hub: probe registered cameras, discover new ones, keep an event channel to each.

- **Probe** (`probe_device`): the camera's host and port come from its stored
  `onvif_url`, its login is decrypted here, server-side, and never leaves the
  hub. A successful probe stores the camera's identity (vendor, model,
  firmware, serial) and its media addresses (RTSP stream URIs, snapshot URI —
  pinned to the configured host, without credentials) on the device; every
  probe, failed or not, is stored with its failure class and audited.
- **Discovery** (`discover`): a WS-Discovery probe from one local interface;
  answers are remembered and those whose address is not registered yet are
  listed. `onboard` = probe with the given login, then register the device.
- **Event channels** (`start`): one PullPoint channel per enabled camera that
  has an ONVIF address and a login, set up with bounded concurrency; the
  registry is re-read every `resync_s` (a cheap fingerprint query first) so
  cameras added, changed or removed get their channel started, restarted or
  stopped. Events go to the hub's writer; channel health is in
  `channel_health()` and in the `gridwatch_onvif_*` metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from adapters.onvif.models import (
    Candidate,
    ChannelHealth,
    DeviceInformation,
    MediaProfile,
    ProbeFailure,
    ProbeResult,
)
from adapters.onvif.parsers import PARSERS, normalize_topic
from adapters.onvif.security import PinPolicy, format_host
from camera_registry.events import DeviceEvent
from camera_registry.logins import LoginBudget, login_version
from camera_registry.models import Credentials, DeviceIn
from hub.clock import utcnow
from hub.devices.registry import Actor, DeviceChange, Registry
from hub.metrics import Metrics
from hub.onvif import storage as repo
from hub.onvif.config import OnvifSettings
from hub.onvif.storage import DeviceIdentity, OnvifTarget, ProbeRow
from hub.storage import SqlStore

__all__ = [
    "DiscoveredCamera",
    "OnboardRequest",
    "OnvifService",
    "OnvifUnavailable",
    "ProbeFailed",
    "ProbeOutcome",
    "camera_address",
    "camera_origin",
    "probe_result_document",
]

log = logging.getLogger(__name__)

#: Hands an event to the hub's writer.
EventSink = Callable[[DeviceEvent], Awaitable[None]]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class OnvifUnavailable(Exception):
    """The device cannot be probed as it is registered (no ONVIF address, no login)."""


class ProbeFailed(Exception):
    """Talking to the camera failed; `failure` is the class a maintainer acts on."""

    def __init__(self, failure: ProbeFailure, message: str, outcome: ProbeOutcome) -> None:
        super().__init__(message)
        self.failure = failure
        self.outcome = outcome


def camera_origin(onvif_url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a camera's ONVIF address (`https://10.0.0.7/onvif/...`)."""
    try:
        parts = urlsplit(onvif_url.strip())
        port = parts.port
    except ValueError as exc:
        raise OnvifUnavailable(f"unreadable ONVIF address: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise OnvifUnavailable("the ONVIF address must be an http(s) URL with a host")
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme]


def camera_address(onvif_url: str) -> tuple[str, int]:
    """Host and port of a camera's ONVIF address (`http://10.0.0.7:8000/onvif/...`)."""
    _, host, port = camera_origin(onvif_url)
    return host, port


def _profile_document(profile: MediaProfile) -> dict[str, Any]:
    return asdict(profile)


def probe_result_document(result: ProbeResult) -> dict[str, Any]:
    """A probe result as stored and returned (JSON-ready; URIs carry no credentials)."""
    offset = result.clock_offset
    return {
        "host": result.host,
        "port": result.port,
        "probed_at": result.probed_at.isoformat(),
        "device": asdict(result.device),
        "services": dict(result.services),
        "profiles": [_profile_document(p) for p in result.profiles],
        "clock_offset_s": offset.total_seconds() if offset is not None else None,
        "warnings": list(result.warnings),
    }


def identity_of(result: ProbeResult) -> DeviceIdentity:
    """What a probe result says the device is, as registry fields."""
    info: DeviceInformation = result.device
    snapshots = [p.snapshot_uri for p in result.profiles if p.snapshot_uri]
    return DeviceIdentity(
        vendor=info.manufacturer or None,
        model=info.model or None,
        firmware=info.firmware_version or None,
        serial=info.serial_number or None,
        rtsp_urls=tuple(p.stream_uri for p in result.profiles if p.stream_uri),
        snapshot_url=snapshots[0] if snapshots else None,
    )


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe of a registered device: the result or the failure, and what changed."""

    device_id: str
    probed_at: datetime
    result: ProbeResult | None = None
    failure: ProbeFailure | None = None
    error: str | None = None
    changed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the camera answered the whole probe."""
        return self.result is not None


@dataclass(frozen=True, slots=True)
class DiscoveredCamera:
    """A WS-Discovery answer, with the device it is registered as (if any)."""

    candidate: Candidate
    host: str | None
    port: int | None
    first_seen_at: datetime
    seen_at: datetime
    device_id: str | None


@dataclass(frozen=True, slots=True)
class OnboardRequest:
    """Turn a discovered (or known) camera into a registered device."""

    device_id: str
    name: str
    xaddr: str  # the camera's device service address, e.g. from discovery
    credentials: Credentials = field(repr=False)
    jurisdiction: str | None = None
    project: str | None = None
    endpoint: str | None = None  # the discovery endpoint reference, to remember the link


class _ChannelStats:
    """Turns cumulative per-channel counters into Prometheus counter increments."""

    def __init__(self, metrics: Metrics, registered_topics: Sequence[str]) -> None:
        self._metrics = metrics
        self._exact = frozenset(t for t in registered_topics if not t.endswith("/*"))
        self._subtrees = frozenset(t[:-2] for t in registered_topics if t.endswith("/*"))
        self._seen: dict[str, tuple[int, int, int, int, int, Counter[str]]] = {}

    def topic_label(self, topic: str) -> str | None:
        """The registered topic (or `subtree/*`) a topic counts under; None if unknown.

        Labels come only from the parser registry, so a camera inventing topic
        names under a known subtree cannot create new series.
        """
        key = normalize_topic(topic).lower()
        if key in self._exact:
            return key
        while key:
            if key in self._subtrees:
                return f"{key}/*"
            key = key.rpartition("/")[0]
        return None

    def update(self, health: Mapping[str, ChannelHealth], now: datetime, stale_s: float) -> None:
        m = self._metrics
        states: Counter[str] = Counter()
        stale = 0
        oldest = 0.0
        for device_id, item in health.items():
            states[item.state] += 1
            last = item.last_successful_pull or item.subscribed_since
            age = (now - last).total_seconds() if last is not None else None
            if item.last_successful_pull is None or (age is not None and age > stale_s):
                stale += 1
            if age is not None:
                oldest = max(oldest, age)
            unknown = sum(item.unknown_topics.values())
            topics: Counter[str] = Counter()
            for topic, count in item.messages_per_topic.items():
                label = self.topic_label(topic)
                if label is not None:
                    topics[label] += count
            previous = self._seen.get(device_id, (0, 0, 0, 0, 0, Counter()))
            now_counts = (
                item.pulls,
                item.renew_failures,
                item.resubscriptions,
                unknown,
                item.malformed_messages,
            )
            for counter, new, old in zip(
                (
                    m.onvif_pulls,
                    m.onvif_renew_failures,
                    m.onvif_resubscriptions,
                    m.onvif_unknown_topic_messages,
                    m.onvif_malformed_messages,
                ),
                now_counts,
                previous[:5],
                strict=True,
            ):
                if new > old:
                    counter.inc(new - old)
            for topic, count in topics.items():
                grown = count - previous[5].get(topic, 0)
                if grown > 0:
                    m.onvif_messages.labels(topic=topic).inc(grown)
            self._seen[device_id] = (*now_counts, topics)
        for gone in set(self._seen) - set(health):
            del self._seen[gone]
        for state in ("starting", "subscribed", "backoff", "stopped"):
            m.onvif_channels.labels(state=state).set(states.get(state, 0))
        m.onvif_channels_stale.set(stale)
        m.onvif_oldest_pull_age.set(oldest)


class OnvifService:
    """Probe, discovery, onboarding and event channels for the hub's ONVIF cameras."""

    def __init__(
        self,
        settings: OnvifSettings,
        *,
        store: SqlStore,
        metrics: Metrics | None = None,
        submit: EventSink | None = None,
        registry: Registry | None = None,
        clock: Callable[[], datetime] = utcnow,
        logins: LoginBudget | None = None,
    ) -> None:
        self.settings = settings
        #: The cameras' login-failure budget, shared with the patrol and snapshots.
        if logins is None:
            logins = registry.logins if registry is not None else LoginBudget()
        self.logins = logins
        self._store = store
        self._metrics = metrics
        self._submit = submit
        self._registry = registry
        self._clock = clock
        self._policy = PinPolicy(settings.pin_policy)
        self._prober: Any = None  # adapters.onvif.client.Prober, built on first use
        self._manager: Any = None  # adapters.onvif.client.EventChannelManager while running
        self._pools: list[Any] = []  # the CameraHttp pools this service opened
        self._channels: dict[str, str] = {}  # device id → fingerprint of what it was built from
        self._refused: dict[str, str] = {}  # device id → fingerprint whose login did not open
        self._registry_fingerprint: tuple[Any, ...] | None = None
        self._resync_lock = asyncio.Lock()
        self._resync_wanted = asyncio.Event()
        self._unsubscribe_registry: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stats = _ChannelStats(metrics, PARSERS.topics()) if metrics is not None else None
        if metrics is not None:
            metrics.before_render(self.refresh_metrics)

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def now(self) -> datetime:
        """The service's clock (aware UTC)."""
        return self._clock()

    @property
    def events_running(self) -> bool:
        """True while event channels are maintained."""
        return self._manager is not None

    async def start(self) -> None:
        """Open event channels to every eligible camera (when enabled) and keep them in sync."""
        if not (self.settings.enabled and self.settings.events_enabled):
            log.info("ONVIF event channels are off (onvif.enabled / onvif.events_enabled)")
            return
        if self._submit is None or self._registry is None:
            log.warning("ONVIF event channels need the event writer and the credential key; off")
            return
        from adapters.onvif.client import CameraHttp, EventChannelManager

        pool = CameraHttp(
            max_connections=self.settings.max_connections, tls=self.settings.camera_tls()
        )
        self._pools.append(pool)
        self._manager = EventChannelManager(
            self._submit,
            settings=self.settings.channel_settings(),
            max_concurrent_setups=self.settings.setup_concurrency,
            http=pool,
            registry=PARSERS.extended(self.settings.adapter_mappings()),
        )
        await self.resync(force=True)
        self._unsubscribe_registry = self._registry.on_change(self._registry_notified)
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="onvif-resync"))
        log.info("ONVIF event channels started for %d camera(s)", len(self._channels))

    async def stop(self) -> None:
        """Stop every event channel (best-effort unsubscribe) and close connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        unsubscribe, self._unsubscribe_registry = self._unsubscribe_registry, None
        if unsubscribe is not None:
            unsubscribe()
        manager, self._manager = self._manager, None
        if manager is not None:
            await manager.close()
        self._channels.clear()
        self._prober = None
        # The manager and prober leave pools they were handed to their owner.
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.aclose()

    # -- credentials ---------------------------------------------------------

    def _login(self, target: OnvifTarget) -> Credentials:
        if target.credentials is None:
            raise OnvifUnavailable("no login is stored for this device")
        if self._registry is None:
            raise OnvifUnavailable("this hub has no device registry to open stored logins")
        try:
            return self._registry.cipher.open(target.device_id, target.credentials)
        except Exception as exc:
            # The cipher's message names the key problem, never the secret.
            raise OnvifUnavailable(f"the stored login does not decrypt: {exc}") from exc

    # -- probe ---------------------------------------------------------------

    def _get_prober(self) -> Any:
        if self._prober is None:
            from adapters.onvif.client import CameraHttp, Prober

            pool = CameraHttp(
                max_connections=max(16, self.settings.probe_concurrency * 2),
                tls=self.settings.camera_tls(),
            )
            self._pools.append(pool)
            self._prober = Prober(max_concurrent=self.settings.probe_concurrency, http=pool)
        return self._prober

    async def probe_camera(
        self, host: str, port: int, credentials: Credentials, *, scheme: str = "http"
    ) -> ProbeResult:
        """Probe a camera at scheme://host:port with a login (raises the adapter's `ProbeError`)."""
        result: ProbeResult = await self._get_prober().probe(
            host,
            port,
            credentials.username,
            credentials.password.get_secret_value(),
            timeout=self.settings.call_timeout_s,
            policy=self._policy,
            scheme=scheme,
        )
        return result

    async def probe_device(
        self,
        device_id: str,
        *,
        scope_paths: Sequence[str] | None = None,
        actor: str = "system:onvif",
        remote_addr: str | None = None,
    ) -> ProbeOutcome:
        """Probe a registered device, store the outcome, update the device; raise on failure.

        Raises LookupError (missing or outside `scope_paths`), `OnvifUnavailable`
        (nothing to probe with) or `ProbeFailed` (the camera failed; the failure
        is stored and audited first).
        """
        from adapters.onvif.client import ProbeError, classify_error

        target = await repo.load_target(self._store, device_id, scope_paths)
        if target is None:
            raise LookupError(device_id)
        if not target.onvif_url:
            raise OnvifUnavailable("the device has no ONVIF address (onvif_url)")
        scheme, host, port = camera_origin(target.onvif_url)
        login = self._login(target)
        started = self._clock()
        version = login_version(target.credentials)
        if not self.logins.may_try(device_id, version, started):
            raise OnvifUnavailable(self.logins.blocked_reason(device_id))
        try:
            result = await self.probe_camera(host, port, login, scheme=scheme)
        except Exception as exc:  # anything the camera provoked is a failure of the probe
            error = exc if isinstance(exc, ProbeError) else classify_error(exc)
            if error is not exc:
                log.warning("probe of device %s failed: %s", device_id, error)
            if error.failure is ProbeFailure.AUTH:
                self.logins.refused(device_id, version, self._clock(), "onvif")
            return await self._record_failure(target, started, error, actor, remote_addr)
        self.logins.accepted(device_id)
        changed = await repo.record_probe(
            self._store,
            device_id=device_id,
            actor=actor,
            probed_at=result.probed_at,
            ok=True,
            failure=None,
            error=None,
            result=probe_result_document(result),
            identity=identity_of(result),
            remote_addr=remote_addr,
        )
        self._count_probe("ok")
        log.info("device %s probed: %s", device_id, ", ".join(sorted(changed)) or "no change")
        return ProbeOutcome(device_id, result.probed_at, result=result, changed=changed)

    async def _record_failure(
        self,
        target: OnvifTarget,
        started: datetime,
        error: Any,
        actor: str,
        remote_addr: str | None,
    ) -> ProbeOutcome:
        failure: ProbeFailure = error.failure
        message = str(error.args[0]) if error.args else failure.value
        await repo.record_probe(
            self._store,
            device_id=target.device_id,
            actor=actor,
            probed_at=started,
            ok=False,
            failure=failure.value,
            error=message[:1000],
            result={},
            remote_addr=remote_addr,
        )
        self._count_probe(failure.value)
        outcome = ProbeOutcome(target.device_id, started, failure=failure, error=message)
        raise ProbeFailed(failure, message, outcome) from error

    def _count_probe(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.onvif_probes.labels(outcome=outcome).inc()

    async def last_probe(self, device_id: str) -> ProbeRow | None:
        """The newest stored probe of a device (no scope check: check the device first)."""
        return await repo.latest_probe(self._store, device_id)

    async def device(
        self, device_id: str, scope_paths: Sequence[str] | None = None
    ) -> OnvifTarget | None:
        """A device as the ONVIF side sees it, within the caller's scope."""
        return await repo.load_target(self._store, device_id, scope_paths)

    # -- discovery and onboarding -------------------------------------------

    async def discover(
        self,
        interface: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - collect window
    ) -> list[DiscoveredCamera]:
        """Probe for ONVIF cameras from `interface` (a local IP); remember and list them."""
        from adapters.onvif.client import discover

        window = timeout if timeout is not None else self.settings.discovery_timeout_s
        candidates = await discover(interface, window, target=self.settings.discovery_address())
        now = self._clock()
        rows = await repo.upsert_candidates(
            self._store,
            [(c.endpoint, c.xaddrs, c.scopes, c.responder) for c in candidates],
            interface=interface,
            seen_at=now,
        )
        registered = self._registered_addresses(await repo.onvif_addresses(self._store))
        by_endpoint = {row.endpoint: row for row in rows}
        found: list[DiscoveredCamera] = []
        for candidate in candidates:
            row = by_endpoint.get(candidate.endpoint)
            host, port = self._candidate_address(candidate)
            device_id = row.device_id if row is not None else None
            if device_id is None and host is not None:
                device_id = registered.get((host.lower(), port))
            found.append(
                DiscoveredCamera(
                    candidate=candidate,
                    host=host,
                    port=port,
                    first_seen_at=row.first_seen_at if row is not None else now,
                    seen_at=now,
                    device_id=device_id,
                )
            )
        log.info(
            "discovery on %s: %d camera(s) answered, %d not registered",
            interface,
            len(found),
            sum(1 for f in found if f.device_id is None),
        )
        return found

    @staticmethod
    def _registered_addresses(addresses: Mapping[str, str]) -> dict[tuple[str, int | None], str]:
        known: dict[tuple[str, int | None], str] = {}
        for url, device_id in addresses.items():
            try:
                host, port = camera_address(url)
            except OnvifUnavailable:
                continue
            known[(host.lower(), port)] = device_id
        return known

    @staticmethod
    def _candidate_address(candidate: Candidate) -> tuple[str | None, int | None]:
        for xaddr in candidate.xaddrs:
            try:
                return camera_address(xaddr)
            except OnvifUnavailable:
                continue
        return None, None

    async def onboard(
        self,
        request: OnboardRequest,
        *,
        scope_paths: Sequence[str] | None = None,
        actor: str = "system:onvif",
        remote_addr: str | None = None,
    ) -> ProbeOutcome:
        """Probe the camera with the given login, register it, then store the probe on it.

        Nothing is registered when the probe fails (the adapter's `ProbeError`
        propagates). The registered device's ONVIF address is the xaddr's
        scheme://host:port/onvif/device_service — never a host the camera named
        beyond the one the caller gave.
        """
        if self._registry is None:
            raise OnvifUnavailable("this hub has no device registry to register cameras in")
        scheme, host, port = camera_origin(request.xaddr)
        result = await self.probe_camera(host, port, request.credentials, scheme=scheme)
        identity = identity_of(result)
        default = _DEFAULT_PORTS[scheme]
        netloc = format_host(host) + ("" if port == default else f":{port}")
        device = DeviceIn.model_validate(
            {
                "id": request.device_id,
                "name": request.name,
                "kind": "camera",
                "project": request.project,
                "jurisdiction": request.jurisdiction,
                "vendor": identity.vendor,
                "model": identity.model,
                "firmware": identity.firmware,
                "serial": identity.serial,
                "onvif_url": f"{scheme}://{netloc}/onvif/device_service",
                "rtsp_urls": list(identity.rtsp_urls),
                "credentials": request.credentials,
            }
        )
        await self._registry.create(device, actor=Actor(actor, remote_addr), scope=scope_paths)
        await repo.record_probe(
            self._store,
            device_id=request.device_id,
            actor=actor,
            probed_at=result.probed_at,
            ok=True,
            failure=None,
            error=None,
            result=probe_result_document(result),
            identity=identity,
            remote_addr=remote_addr,
        )
        if request.endpoint:
            await repo.mark_candidate_onboarded(self._store, request.endpoint, request.device_id)
        self._count_probe("ok")
        if self.events_running:
            await self.resync()
        log.info("onboarded camera %s at %s:%d", request.device_id, host, port)
        return ProbeOutcome(request.device_id, result.probed_at, result=result)

    # -- event channels ------------------------------------------------------

    def channel_health(self, device_id: str) -> ChannelHealth | None:
        """One camera's event channel health (None: no channel for it)."""
        if self._manager is None or device_id not in self._channels:
            return None
        health: ChannelHealth | None = self._manager.health().get(device_id)
        return health

    def channels(self) -> dict[str, ChannelHealth]:
        """Every event channel's health, by device id."""
        if self._manager is None:
            return {}
        health: dict[str, ChannelHealth] = self._manager.health()
        return health

    def refresh_metrics(self) -> None:
        """Bring the `gridwatch_onvif_*` metrics up to date with the channels."""
        if self._stats is not None:
            self._stats.update(self.channels(), self._clock(), self.settings.stale_after_s)

    async def _registry_changed(self) -> bool:
        fingerprint = await repo.registry_fingerprint(self._store)
        changed = fingerprint != self._registry_fingerprint
        self._registry_fingerprint = fingerprint
        return changed

    async def resync(self, *, force: bool = False) -> tuple[int, int]:
        """Match the channels to the registry; return (started, stopped)."""
        manager = self._manager
        if manager is None:
            return 0, 0
        async with self._resync_lock:
            if not await self._registry_changed() and not force:
                return 0, 0
            targets = {t.device_id: t for t in await repo.event_channel_targets(self._store)}
            stopped = 0
            for device_id, fingerprint in list(self._channels.items()):
                target = targets.get(device_id)
                if target is None or target.channel_fingerprint() != fingerprint:
                    await manager.remove(device_id)
                    del self._channels[device_id]
                    stopped += 1
            started = 0
            for device_id, target in targets.items():
                if device_id in self._channels:
                    continue
                fingerprint = target.channel_fingerprint()
                if self._refused.get(device_id) == fingerprint:
                    continue
                try:
                    scheme, host, port = camera_origin(target.onvif_url or "")
                    login = self._login(target)
                except OnvifUnavailable as exc:
                    # Logged once per registry state of the device, not every resync.
                    self._refused[device_id] = fingerprint
                    log.warning("camera %s: no event channel: %s", device_id, exc)
                    continue
                self._refused.pop(device_id, None)
                manager.add(
                    device_id,
                    host,
                    port,
                    login.username,
                    login.password.get_secret_value(),
                    policy=self._policy,
                    scheme=scheme,
                )
                self._channels[device_id] = fingerprint
                started += 1
            if started or stopped:
                log.info(
                    "ONVIF event channels: %d started, %d stopped, %d running",
                    started,
                    stopped,
                    len(self._channels),
                )
            return started, stopped

    def _registry_notified(self, change: DeviceChange) -> None:
        # Called by the registry after a commit (on the event loop): resync soon.
        self._resync_wanted.set()

    async def _resync_loop(self) -> None:
        while True:
            # Woken by registry changes made on this node; the period catches other nodes'.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.resync_s):
                    await self._resync_wanted.wait()
            self._resync_wanted.clear()
            try:
                await self.resync()
            except Exception:
                log.exception("ONVIF event channel resync failed; will retry")
