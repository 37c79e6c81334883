"""ONVIF in the hub: probe registered cameras, discover new ones, keep an event channel to each.

- **Probe** (`probe_device`): the camera's host and port come from its stored
  `onvif_url`, its login is decrypted here, server-side, and never leaves the
  hub. A successful probe stores the camera's identity (vendor, model,
  firmware, serial) and its media addresses (RTSP stream URIs, snapshot URI —
  pinned to the configured host, without credentials) on the device; every
  probe, failed or not, is stored with its failure class and audited. What a
  probe is (addresses, outcome, stored document) is in `hub.onvif.probes`.
- **Discovery** (`discover`): a WS-Discovery probe from one local interface;
  answers are remembered and those whose address is not registered yet are
  listed. `onboard` = probe with the given login, then register the device.
- **Event channels** (`start`): `hub.onvif.channels.EventChannels`, one PullPoint
  channel per eligible camera kept in step with the registry; channel health is in
  `channel_health()` and in the `gridwatch_onvif_*` metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from adapters.onvif.models import Candidate, ChannelHealth, ProbeFailure, ProbeResult
from adapters.onvif.security import PinPolicy, format_host
from camera_registry.logins import LoginBudget, login_version
from camera_registry.models import Credentials, DeviceIn
from hub.clock import utcnow
from hub.devices.registry import Actor, Registry
from hub.metrics import Metrics
from hub.onvif import storage as repo
from hub.onvif.channels import EventChannels, EventSink
from hub.onvif.config import OnvifSettings
from hub.onvif.probes import (
    DEFAULT_PORTS,
    DiscoveredCamera,
    OnboardRequest,
    OnvifUnavailable,
    ProbeFailed,
    ProbeOutcome,
    camera_address,
    camera_origin,
    identity_of,
    open_login,
    probe_result_document,
)
from hub.onvif.storage import OnvifTarget, ProbeRow
from hub.storage import SqlStore

__all__ = ["OnvifService"]

log = logging.getLogger(__name__)


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
        self._registry = registry
        self._clock = clock
        self._policy = PinPolicy(settings.pin_policy)
        self._prober: Any = None  # adapters.onvif.client.Prober, built on first use
        self._probe_pool: Any = None  # its CameraHttp pool
        self._channels: EventChannels | None = None
        if submit is not None and registry is not None:
            self._channels = EventChannels(
                settings,
                store=store,
                submit=submit,
                registry=registry,
                policy=self._policy,
                metrics=metrics,
                clock=clock,
            )
            if metrics is not None:
                metrics.before_render(self._channels.refresh_metrics)

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
        return self._channels is not None and self._channels.running

    async def start(self) -> None:
        """Open event channels to every eligible camera (when enabled) and keep them in sync."""
        if not (self.settings.enabled and self.settings.events_enabled):
            log.info("ONVIF event channels are off (onvif.enabled / onvif.events_enabled)")
            return
        if self._channels is None:
            log.warning("ONVIF event channels need the event writer and the credential key; off")
            return
        await self._channels.start()
        log.info("ONVIF event channels started for %d camera(s)", len(self._channels))

    def use_assignment(self, is_mine: Callable[[str], bool]) -> None:
        """Keep event channels only to the cameras `is_mine` names (this node's share)."""
        if self._channels is not None:
            self._channels.use_assignment(is_mine)

    def reassign(self) -> None:
        """This node's share of the cameras changed: bring the channels in step soon."""
        if self._channels is not None:
            self._channels.reassign()

    async def stop(self) -> None:
        """Stop every event channel (best-effort unsubscribe) and close connections."""
        if self._channels is not None:
            await self._channels.stop()
        self._prober = None
        # The prober leaves the pool it was handed to its owner.
        pool, self._probe_pool = self._probe_pool, None
        if pool is not None:
            await pool.aclose()

    # -- credentials ---------------------------------------------------------

    def _login(self, target: OnvifTarget) -> Credentials:
        return open_login(self._registry, target)

    # -- probe ---------------------------------------------------------------

    def _get_prober(self) -> Any:
        if self._prober is None:
            from adapters.onvif.client import CameraHttp, Prober

            self._probe_pool = CameraHttp(
                max_connections=max(16, self.settings.probe_concurrency * 2),
                tls=self.settings.camera_tls(),
            )
            self._prober = Prober(
                max_concurrent=self.settings.probe_concurrency, http=self._probe_pool
            )
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
        default = DEFAULT_PORTS[scheme]
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
        return self._channels.health_of(device_id) if self._channels is not None else None

    def channels(self) -> dict[str, ChannelHealth]:
        """Every event channel's health, by device id."""
        return self._channels.health() if self._channels is not None else {}

    def refresh_metrics(self) -> None:
        """Bring the `gridwatch_onvif_*` metrics up to date with the channels."""
        if self._channels is not None:
            self._channels.refresh_metrics()

    async def resync(self, *, force: bool = False) -> tuple[int, int]:
        """Match the channels to the registry; return (started, stopped)."""
        if self._channels is None:
            return 0, 0
        return await self._channels.resync(force=force)
