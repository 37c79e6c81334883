"""The ONVIF adapter's one I/O module: probe, PullPoint event channels, WS-Discovery.

Everything a camera sends is untrusted. All HTTP goes through `CameraHttp`:
responses are capped (10 MiB), read against a total deadline (a camera that
trickles one byte per second is cut off), never decompressed, never redirected,
and only ever sent to the host and port the operator configured — the camera's
advertised addresses are pinned by `security.pin_uri` first.

Probing uses `onvif-zeep-async` (its WSDLs, its ONVIFCamera service factory and
its clock-adjusted WS-Security digest), with each zeep client's transport
replaced by the hardened one and its parse settings tightened.

The event channel speaks PullPoint SOAP directly over `CameraHttp` instead of
zeep's event service: the topic parsers work on the raw notification XML, the
subscription's reference parameters must be echoed verbatim, and zeep's
PullPointManager runs its own renewal tasks that would hide failures the
channel health has to count.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import requests
import zeep.exceptions
from requests.structures import CaseInsensitiveDict
from zeep.settings import Settings
from zeep.transports import Transport

from adapters.onvif import soap
from adapters.onvif.models import (
    Candidate,
    ChannelHealth,
    DeviceInformation,
    MediaProfile,
    ProbeFailure,
    ProbeResult,
)
from adapters.onvif.parsers import (
    PARSERS,
    NotificationInterpreter,
    SoapFault,
    SubscriptionTimes,
    TopicRegistry,
    parse_create_pull_point_response,
    parse_events_xaddr,
    parse_probe_matches,
    parse_pull_messages_response,
    parse_renew_response,
    parse_soap_fault,
    parse_system_date_and_time,
)
from adapters.onvif.security import (
    ForeignHostRefused,
    PinPolicy,
    clock_offset,
    format_host,
    pin_uri,
    redact_uri,
    strip_userinfo,
)
from adapters.safexml import MAX_XML_BYTES, XmlRefused, parse_untrusted_xml
from camera_registry.events import DeviceEvent, Severity

__all__ = [
    "DEFAULT_TIMEOUT",
    "CameraHttp",
    "EventChannelManager",
    "EventChannelSettings",
    "EventSubmitError",
    "EventSubscription",
    "ProbeError",
    "Prober",
    "ResponseTooLarge",
    "classify_error",
    "discover",
    "probe",
]

logger = logging.getLogger(__name__)

#: Default deadline for one call to a camera, seconds.
DEFAULT_TIMEOUT = 10.0

Submit = Callable[[DeviceEvent], Awaitable[None]]
Clock = Callable[[], datetime]

_EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
_MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
_CAPABILITY_NAMESPACES = {
    "Analytics": "http://www.onvif.org/ver20/analytics/wsdl",
    "Device": "http://www.onvif.org/ver10/device/wsdl",
    "Events": _EVENTS_NS,
    "Imaging": "http://www.onvif.org/ver20/imaging/wsdl",
    "Media": _MEDIA_NS,
    "PTZ": "http://www.onvif.org/ver20/ptz/wsdl",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _import_onvif() -> Any:
    """Import onvif.client without letting it reconfigure the process's logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    module = importlib.import_module("onvif.client")
    # onvif.client calls logging.basicConfig() at import; the hub owns logging.
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return module


_onvif = _import_onvif()


# ---------------------------------------------------------------------------
# Hardened HTTP


class ResponseTooLarge(Exception):
    """A camera's answer exceeded the response size cap."""


class CameraRequestError(Exception):
    """An HTTP-level failure talking to a camera, classified for the operator."""

    def __init__(self, failure: ProbeFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    body: bytes


class CameraHttp:
    """Hardened HTTP client shared by many cameras (one connection pool, no threads)."""

    def __init__(
        self,
        *,
        max_response_bytes: int = MAX_XML_BYTES,
        connect_timeout: float = 5.0,
        max_connections: int = 4096,
        verify_tls: bool = False,
    ) -> None:
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        self.max_response_bytes = max_response_bytes
        self._connect_timeout = connect_timeout
        # Cameras serve self-signed certificates; TLS here protects against
        # passive listeners only, and host pinning protects the credentials.
        self._client = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            verify=verify_tls,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=256),
            headers={"Accept-Encoding": "identity", "User-Agent": "GridWatch-ONVIF"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        pinned: tuple[str, int],
        deadline: float = DEFAULT_TIMEOUT,
    ) -> _Answer:
        """POST `body` to `url` (which must be on the pinned host:port) and read a capped answer."""
        self._check_pinned(url, pinned)
        timeout = deadline
        httpx_timeout = httpx.Timeout(timeout, connect=min(self._connect_timeout, timeout))
        try:
            # The total deadline is what stops a camera that trickles bytes:
            # httpx's read timeout only bounds the gap between two reads.
            async with asyncio.timeout(timeout):
                request = self._client.build_request(
                    "POST", url, content=body, headers=headers, timeout=httpx_timeout
                )
                response = await self._client.send(request, stream=True)
                try:
                    return await self._read_capped(response)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise CameraRequestError(
                ProbeFailure.TIMEOUT, f"no complete answer from {redact_uri(url)} in {timeout:g} s"
            ) from exc
        except httpx.TimeoutException as exc:
            raise CameraRequestError(
                ProbeFailure.TIMEOUT,
                f"timed out talking to {redact_uri(url)}: {type(exc).__name__}",
            ) from exc
        except (httpx.ConnectError, httpx.NetworkError, OSError) as exc:
            raise CameraRequestError(
                ProbeFailure.UNREACHABLE, f"cannot reach {redact_uri(url)}: {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise CameraRequestError(
                ProbeFailure.PROTOCOL, f"HTTP error from {redact_uri(url)}: {exc}"
            ) from exc

    @staticmethod
    def _check_pinned(url: str, pinned: tuple[str, int]) -> None:
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        if (
            parts.hostname is None
            or format_host(parts.hostname).lower() != format_host(pinned[0]).lower()
            or (parts.port or default) != pinned[1]
        ):
            # Last line of defence: credentials only ever go to the configured camera.
            raise ForeignHostRefused(
                f"refusing to send a request to {redact_uri(url)}: "
                f"configured camera is {pinned[0]}:{pinned[1]}"
            )

    async def _read_capped(self, response: httpx.Response) -> _Answer:
        cap = self.max_response_bytes
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise ResponseTooLarge(
                f"refusing a {encoding!r}-encoded answer (decompression bomb risk)"
            )
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"answer declares {declared} bytes, cap is {cap}")
        buffer = bytearray()
        async for chunk in response.aiter_raw():
            buffer += chunk
            if len(buffer) > cap:
                raise ResponseTooLarge(f"answer exceeds the {cap} byte cap")
        return _Answer(
            response.status_code, response.headers.get("Content-Type", ""), bytes(buffer)
        )


# ---------------------------------------------------------------------------
# zeep on the hardened transport


_ZEEP_SETTINGS = Settings(
    strict=False,  # cameras bend the schemas; the XML itself was already checked strictly
    xml_huge_tree=False,
    forbid_dtd=True,
    forbid_entities=True,
    forbid_external=True,
)


class _HardenedZeepTransport(Transport):
    """zeep transport that posts through `CameraHttp` and pre-checks every answer."""

    def __init__(self, http: CameraHttp, pinned: tuple[str, int], timeout: float) -> None:
        super().__init__(cache=None, timeout=timeout, operation_timeout=timeout)  # type: ignore[no-untyped-call]
        self._http = http
        self._pinned = pinned
        self._timeout = timeout

    async def post_xml(self, address: str, envelope: Any, headers: dict[str, str]) -> Any:
        from zeep.wsdl.utils import etree_to_string

        answer = await self._http.post(
            address,
            etree_to_string(envelope),  # type: ignore[no-untyped-call]
            dict(headers),
            pinned=self._pinned,
            deadline=self._timeout,
        )
        if answer.body.strip():
            # Refuses DOCTYPE / entities / malformed XML before zeep sees it.
            parse_untrusted_xml(answer.body, max_bytes=self._http.max_response_bytes)
        response = requests.Response()
        response._content = answer.body
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict({"Content-Type": answer.content_type or "text/xml"})
        response.encoding = "utf-8"
        return response

    def load(self, url: str) -> bytes:
        raise ForeignHostRefused(
            f"refusing to fetch {redact_uri(url)} while parsing a camera answer"
        )


async def _service(camera: Any, name: str, transport: _HardenedZeepTransport) -> Any:
    service = await camera.create_onvif_service(name)
    for client in (service.zeep_client, service.zeep_client_authless):
        client.transport = transport
        client.settings = _ZEEP_SETTINGS
    return service


# ---------------------------------------------------------------------------
# Probe


class ProbeError(Exception):
    """A probe or channel call failed; `failure` says what kind of failure."""

    def __init__(self, failure: ProbeFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure

    def __str__(self) -> str:
        return f"{self.failure.value}: {self.args[0]}"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_error(exc: BaseException) -> ProbeError:
    """Map whatever a camera call raised onto an operator-facing failure kind."""
    for error in _chain(exc):
        if isinstance(error, ProbeError):
            return error
        if isinstance(error, CameraRequestError):
            return ProbeError(error.failure, str(error))
        if isinstance(error, ForeignHostRefused):
            return ProbeError(ProbeFailure.REFUSED, str(error))
        if isinstance(error, (ResponseTooLarge, XmlRefused)):
            return ProbeError(ProbeFailure.PROTOCOL, str(error))
        if isinstance(error, SoapFault):
            kind = ProbeFailure.AUTH if error.is_auth_failure else ProbeFailure.PROTOCOL
            return ProbeError(kind, str(error))
        if isinstance(error, zeep.exceptions.Fault):
            fault = SoapFault(
                str(error.code or ""),
                tuple(str(getattr(s, "text", s)) for s in (error.subcodes or ())),
                str(error.message or ""),
            )
            kind = ProbeFailure.AUTH if fault.is_auth_failure else ProbeFailure.PROTOCOL
            return ProbeError(kind, str(fault))
        if isinstance(error, zeep.exceptions.TransportError):
            if error.status_code in (401, 403):
                return ProbeError(ProbeFailure.AUTH, f"HTTP {error.status_code} from camera")
            return ProbeError(ProbeFailure.PROTOCOL, f"HTTP {error.status_code}: unusable answer")
        if isinstance(error, (zeep.exceptions.Error, zeep.exceptions.XMLSyntaxError)):
            return ProbeError(ProbeFailure.PROTOCOL, f"{type(error).__name__}: {error}"[:300])
        if isinstance(error, TimeoutError):
            return ProbeError(ProbeFailure.TIMEOUT, "camera did not answer in time")
        if isinstance(error, (ConnectionError, socket.gaierror)):
            return ProbeError(ProbeFailure.UNREACHABLE, str(error))
    return ProbeError(ProbeFailure.PROTOCOL, f"{type(exc).__name__}: {exc}"[:300])


def _value(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None) if not isinstance(obj, dict) else obj.get(name)
    return obj


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


async def _read_clock(devicemgmt: Any, clock: Clock) -> timedelta | None:
    sent = clock()
    try:
        answer = await devicemgmt.authless_GetSystemDateAndTime()
    except zeep.exceptions.Fault:
        # Some cameras (ipycam among them) want a signed request even for the clock.
        answer = await devicemgmt.GetSystemDateAndTime()
    received = clock()
    utc = _value(answer, "UTCDateTime")
    try:
        device_utc = datetime(
            int(_value(utc, "Date", "Year")),
            int(_value(utc, "Date", "Month")),
            int(_value(utc, "Date", "Day")),
            int(_value(utc, "Time", "Hour")),
            int(_value(utc, "Time", "Minute")),
            int(_value(utc, "Time", "Second")),
            tzinfo=UTC,
        )
    except (TypeError, ValueError):
        return None
    return clock_offset(device_utc, sent, received)


async def _service_addresses(
    devicemgmt: Any, host: str, port: int, policy: PinPolicy, warnings: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    advertised: dict[str, str] = {}
    try:
        services = await devicemgmt.GetServices({"IncludeCapability": False})
        for service in services or []:
            namespace, xaddr = _value(service, "Namespace"), _value(service, "XAddr")
            if namespace and xaddr:
                advertised[str(namespace)] = str(xaddr)
    except zeep.exceptions.Fault as exc:
        logger.debug("camera %s:%s has no GetServices (%s); using GetCapabilities", host, port, exc)
    if not advertised:
        capabilities = await devicemgmt.GetCapabilities({"Category": "All"})
        for name, namespace in _CAPABILITY_NAMESPACES.items():
            xaddr = _value(capabilities, name, "XAddr")
            if xaddr:
                advertised[namespace] = str(xaddr)
    pinned: dict[str, str] = {}
    refused: dict[str, str] = {}
    for namespace, xaddr in advertised.items():
        try:
            pinned[namespace] = pin_uri(xaddr, host, port, policy=policy)
        except ForeignHostRefused as exc:
            refused[namespace] = str(exc)
            warnings.append(f"service {namespace} refused: {exc}")
            logger.warning("camera %s:%s: service address refused: %s", host, port, exc)
            continue
        if pinned[namespace] != xaddr:
            logger.info(
                "camera %s:%s advertised %s for %s; pinned to %s",
                host,
                port,
                redact_uri(xaddr),
                namespace,
                pinned[namespace],
            )
    return pinned, refused


def _pin_media_uri(
    uri: Any, host: str, policy: PinPolicy, schemes: frozenset[str], what: str, warnings: list[str]
) -> str | None:
    if not uri:
        return None
    try:
        return strip_userinfo(pin_uri(str(uri), host, None, policy=policy, schemes=schemes))
    except ForeignHostRefused as exc:
        warnings.append(f"{what} refused: {exc}")
        logger.warning("camera %s: %s refused: %s", host, what, exc)
        return None


async def _profiles(
    media: Any, host: str, policy: PinPolicy, warnings: list[str]
) -> list[MediaProfile]:
    result: list[MediaProfile] = []
    for profile in await media.GetProfiles() or []:
        token = _value(profile, "token")
        if not token:
            continue
        encoder = _value(profile, "VideoEncoderConfiguration")
        stream_uri = snapshot_uri = None
        try:
            answer = await media.GetStreamUri(
                {
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                    "ProfileToken": token,
                }
            )
            stream_uri = _pin_media_uri(
                _value(answer, "Uri"),
                host,
                policy,
                frozenset({"rtsp", "rtsps"}),
                f"stream URI of profile {token}",
                warnings,
            )
        except zeep.exceptions.Fault as exc:
            warnings.append(f"profile {token}: no stream URI ({exc})")
        try:
            answer = await media.GetSnapshotUri({"ProfileToken": token})
            snapshot_uri = _pin_media_uri(
                _value(answer, "Uri"),
                host,
                policy,
                frozenset({"http", "https"}),
                f"snapshot URI of profile {token}",
                warnings,
            )
        except zeep.exceptions.Fault as exc:
            warnings.append(f"profile {token}: no snapshot URI ({exc})")
        encoding = _value(encoder, "Encoding")
        result.append(
            MediaProfile(
                token=str(token),
                name=str(_value(profile, "Name") or ""),
                encoding=str(encoding) if encoding else None,
                width=_int(_value(encoder, "Resolution", "Width")),
                height=_int(_value(encoder, "Resolution", "Height")),
                frame_rate=_float(_value(encoder, "RateControl", "FrameRateLimit")),
                bitrate_kbps=_int(_value(encoder, "RateControl", "BitrateLimit")),
                video_source_token=_value(profile, "VideoSourceConfiguration", "SourceToken"),
                stream_uri=stream_uri,
                snapshot_uri=snapshot_uri,
            )
        )
    return result


def _new_camera(host: str, port: int, username: str, password: str) -> Any:
    # ONVIFCamera drops proxy variables from os.environ; keep the process's own.
    saved = {k: os.environ[k] for k in ("http_proxy", "https_proxy") if k in os.environ}
    try:
        return _onvif.ONVIFCamera(host, port, username, password, no_cache=True, adjust_time=False)
    finally:
        os.environ.update(saved)


async def probe(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a per-call deadline, not the whole probe
    policy: PinPolicy = PinPolicy.REWRITE,
    http: CameraHttp | None = None,
    clock: Clock = _utcnow,
) -> ProbeResult:
    """Read a camera's identity, services, profiles and stream/snapshot URIs.

    Raises `ProbeError` whose `failure` is auth / unreachable / timeout /
    protocol / refused. Every call has `timeout` seconds; URIs in the result
    are pinned to `host` and carry no credentials.
    """
    own_http = http is None
    client = http or CameraHttp()
    transport = _HardenedZeepTransport(client, (host, port), timeout)
    camera = _new_camera(host, port, username, password)
    warnings: list[str] = []
    try:
        devicemgmt = await _service(camera, "devicemgmt", transport)
        offset = await _read_clock(devicemgmt, clock)
        if offset is not None:
            # Rebuild the device service so its WS-Security timestamps use the camera's clock.
            camera.dt_diff = offset
            await devicemgmt.close()
            camera.services.pop(devicemgmt.binding_key, None)
            devicemgmt = await _service(camera, "devicemgmt", transport)
        info = await devicemgmt.GetDeviceInformation()
        services, refused = await _service_addresses(devicemgmt, host, port, policy, warnings)
        if _MEDIA_NS in refused:
            raise ProbeError(ProbeFailure.REFUSED, f"media service: {refused[_MEDIA_NS]}")
        camera.xaddrs = dict(services)
        profiles: list[MediaProfile] = []
        if _MEDIA_NS in services:
            media = await _service(camera, "media", transport)
            profiles = await _profiles(media, host, policy, warnings)
        else:
            warnings.append("camera has no usable media service")
        result = ProbeResult(
            host=host,
            port=port,
            probed_at=clock(),
            device=DeviceInformation(
                manufacturer=str(_value(info, "Manufacturer") or ""),
                model=str(_value(info, "Model") or ""),
                firmware_version=str(_value(info, "FirmwareVersion") or ""),
                serial_number=str(_value(info, "SerialNumber") or ""),
                hardware_id=str(_value(info, "HardwareId") or ""),
            ),
            services=services,
            profiles=tuple(profiles),
            clock_offset=offset,
            warnings=tuple(warnings),
        )
    except Exception as exc:
        error = classify_error(exc)
        logger.warning("probe of camera %s:%s failed: %s", host, port, error)
        raise error from exc
    finally:
        await camera.close()
        if own_http:
            await client.aclose()
    logger.info(
        "probed camera %s:%s: %s %s, %d profiles",
        host,
        port,
        result.device.manufacturer,
        result.device.model,
        len(result.profiles),
    )
    return result


class Prober:
    """Runs probes with bounded concurrency over one shared connection pool."""

    def __init__(self, *, max_concurrent: int = 16, http: CameraHttp | None = None) -> None:
        if max_concurrent <= 0:
            raise ValueError("max_concurrent must be positive")
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._own_http = http is None
        self._http = http or CameraHttp()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_http:
            await self._http.aclose()

    async def probe(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - passed on to probe()
        policy: PinPolicy = PinPolicy.REWRITE,
    ) -> ProbeResult:
        """`probe()` under the concurrency bound."""
        async with self._semaphore:
            return await probe(
                host, port, username, password, timeout=timeout, policy=policy, http=self._http
            )


# ---------------------------------------------------------------------------
# PullPoint event channel


@dataclass(frozen=True, slots=True)
class EventChannelSettings:
    """Timing of one camera's event channel."""

    subscription_lifetime: timedelta = timedelta(minutes=2)
    renew_before: timedelta = timedelta(seconds=30)
    pull_timeout: timedelta = timedelta(seconds=5)
    message_limit: int = 100
    call_timeout: float = DEFAULT_TIMEOUT
    backoff_initial: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.renew_before >= self.subscription_lifetime:
            raise ValueError("renew_before must be shorter than subscription_lifetime")
        if self.pull_timeout >= self.subscription_lifetime - self.renew_before:
            raise ValueError("pull_timeout must leave time to renew before expiry")
        if not 0 < self.message_limit <= 1024:
            raise ValueError("message_limit must be 1..1024")
        if self.call_timeout <= 0 or self.backoff_initial <= 0:
            raise ValueError("timeouts and backoff must be positive")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be ≥ backoff_initial")


class _ChannelFailure(Exception):
    """The channel must re-subscribe; carries the operator-facing reason."""


@dataclass(slots=True)
class _Subscription:
    address: str
    reference_parameters: tuple[bytes, ...]
    created_at: datetime
    expires_at: datetime


class EventSubscription:
    """One camera's PullPoint event channel, as an async context manager.

    Subscribes, pulls in a loop, renews before expiry and re-subscribes with
    jittered exponential backoff on any failure. Events go to `submit`;
    `health()` returns a `ChannelHealth` snapshot at any time. The channel also
    submits `onvif.channel_lost` / `onvif.channel_restored` events so a camera
    that stops answering is visible as such.
    """

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        submit: Submit,
        *,
        events_xaddr: str | None = None,
        settings: EventChannelSettings | None = None,
        policy: PinPolicy = PinPolicy.REWRITE,
        http: CameraHttp | None = None,
        setup_limiter: asyncio.Semaphore | None = None,
        interpreter: NotificationInterpreter | None = None,
        registry: TopicRegistry = PARSERS,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        self._credentials = soap.Credentials(username, password)
        self._submit = submit
        self._settings = settings or EventChannelSettings()
        self._policy = policy
        self._own_http = http is None
        self._http = http or CameraHttp()
        self._setup_limiter = setup_limiter
        self._interpreter = interpreter or NotificationInterpreter(device_id, registry=registry)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not security
        self._configured_events_xaddr = events_xaddr
        self._events_xaddr: str | None = None
        self._subscription: _Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._health = ChannelHealth(device_id=device_id, state="stopped")
        self._offset = timedelta(0)
        self._lost_reported = False

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Start the channel's task (idempotent)."""
        if self._task is None or self._task.done():
            self._update(state="starting")
            self._task = asyncio.create_task(self.run(), name=f"onvif-events-{self.device_id}")

    async def stop(self) -> None:
        """Stop pulling, unsubscribe (best effort, short) and release the connection pool."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unsubscribe()
        self._update(state="stopped")
        if self._own_http:
            await self._http.aclose()

    def health(self) -> ChannelHealth:
        """A snapshot of this channel's health, with current per-topic counters."""
        return replace(
            self._health,
            messages_per_topic=dict(self._interpreter.messages_per_topic),
            unknown_topics=self._interpreter.unknown_topics.counts(self.device_id),
            malformed_messages=self._interpreter.malformed,
            clock_offset=self._offset,
        )

    # -- the loop ----------------------------------------------------------

    async def run(self) -> None:
        """Run the channel until cancelled; failures lead to a backed-off re-subscribe."""
        while True:
            try:
                await self._subscribe()
                await self._pull_loop()
            except asyncio.CancelledError:
                raise
            except EventSubmitError:
                # The hub could not take an event: stop rather than drop events silently.
                logger.exception(
                    "camera %s: event submission failed, channel stops", self.device_id
                )
                raise
            except Exception as exc:  # any failure → count, report, back off, re-subscribe
                await self._on_failure(exc)

    async def _on_failure(self, exc: Exception) -> None:
        reason = str(classify_error(exc)) if not isinstance(exc, _ChannelFailure) else str(exc)
        failures = self._health.consecutive_failures + 1
        now = self._clock()
        self._update(
            state="backoff", last_error=reason, last_error_at=now, consecutive_failures=failures
        )
        logger.warning(
            "camera %s: event channel failed (%d in a row): %s", self.device_id, failures, reason
        )
        await self._unsubscribe()
        if not self._lost_reported:
            self._lost_reported = True
            await self._emit(self._channel_event("onvif.channel_lost", reason, now))
        delay = min(
            self._settings.backoff_max, self._settings.backoff_initial * 2 ** (failures - 1)
        )
        await asyncio.sleep(self._rng.uniform(delay / 2, delay))

    def _channel_event(self, kind: str, reason: str | None, now: datetime) -> DeviceEvent:
        payload: dict[str, Any] = {"host": self.host, "port": self.port}
        if reason:
            payload["reason"] = reason
        return DeviceEvent(
            time=now,
            device_id=self.device_id,
            kind=kind,
            severity=Severity.WARNING if kind == "onvif.channel_lost" else Severity.INFO,
            source="onvif",
            payload=payload,
        )

    async def _pull_loop(self) -> None:
        while True:
            subscription = self._subscription
            if subscription is None:  # only _unsubscribe clears it, and not while pulling
                raise _ChannelFailure("no subscription")
            if self._clock() >= subscription.expires_at - self._settings.renew_before:
                await self._renew(subscription)
            answer = await self._call(
                subscription.address,
                *soap.pull_messages(self._settings.pull_timeout, self._settings.message_limit),
                reference_parameters=subscription.reference_parameters,
                deadline=self._settings.call_timeout + self._settings.pull_timeout.total_seconds(),
            )
            result = parse_pull_messages_response(answer)
            now = self._clock()
            if result.termination_time is not None and result.current_time is not None:
                # Some cameras extend the subscription on every pull; trust what they say.
                subscription.expires_at = now + (result.termination_time - result.current_time)
            self._update(
                last_successful_pull=now,
                pulls=self._health.pulls + 1,
                messages_total=self._health.messages_total + len(result.messages),
                consecutive_failures=0,
                state="subscribed",
            )
            for event in self._interpreter.interpret(result, now):
                await self._emit(event)

    async def _emit(self, event: DeviceEvent) -> None:
        try:
            await self._submit(event)
        except Exception as exc:
            raise EventSubmitError(f"submit failed for {event.kind}: {exc}") from exc

    # -- SOAP steps --------------------------------------------------------

    async def _subscribe(self) -> None:
        self._update(state="starting")
        if self._setup_limiter is not None:
            async with self._setup_limiter:
                await self._create_subscription()
        else:
            await self._create_subscription()
        if self._health.subscribed_since is not None:
            self._update(resubscriptions=self._health.resubscriptions + 1)
        now = self._clock()
        self._update(state="subscribed", subscribed_since=now)
        if self._lost_reported:
            self._lost_reported = False
            await self._emit(self._channel_event("onvif.channel_restored", None, now))

    async def _create_subscription(self) -> None:
        device_url = f"http://{format_host(self.host)}:{self.port}/onvif/device_service"
        await self._sync_clock(device_url)
        if self._events_xaddr is None:
            advertised = self._configured_events_xaddr
            if advertised is None:
                answer = await self._call(device_url, *soap.get_capabilities_events())
                advertised = parse_events_xaddr(answer)
                if advertised is None:
                    raise _ChannelFailure("camera advertises no event service")
            self._events_xaddr = pin_uri(advertised, self.host, self.port, policy=self._policy)
        lifetime = self._settings.subscription_lifetime
        answer = await self._call(
            self._events_xaddr, *soap.create_pull_point_subscription(lifetime)
        )
        address, parameters, times = parse_create_pull_point_response(answer)
        pinned = pin_uri(address, self.host, self.port, policy=self._policy)
        now = self._clock()
        self._subscription = _Subscription(
            pinned, parameters, now, now + _lifetime(times, lifetime)
        )
        logger.info("camera %s: event subscription created at %s", self.device_id, pinned)

    async def _sync_clock(self, device_url: str) -> None:
        action, body = soap.get_system_date_and_time()
        sent = self._clock()
        try:
            answer = await self._call(device_url, action, body, signed=False)
        except ProbeError as exc:
            if exc.failure is not ProbeFailure.AUTH:
                raise
            answer = await self._call(device_url, action, body)
        received = self._clock()
        device_utc = parse_system_date_and_time(answer)
        if device_utc is not None:
            self._offset = clock_offset(device_utc, sent, received)

    async def _renew(self, subscription: _Subscription) -> None:
        lifetime = self._settings.subscription_lifetime
        try:
            answer = await self._call(
                subscription.address,
                *soap.renew(lifetime),
                reference_parameters=subscription.reference_parameters,
            )
            times = parse_renew_response(answer)
        except Exception as exc:
            self._update(renew_failures=self._health.renew_failures + 1)
            raise _ChannelFailure(f"renew failed: {classify_error(exc)}") from exc
        subscription.expires_at = self._clock() + _lifetime(times, lifetime)
        self._update(renewals=self._health.renewals + 1)

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            await self._call(
                subscription.address,
                *soap.unsubscribe(),
                reference_parameters=subscription.reference_parameters,
                deadline=min(2.0, self._settings.call_timeout),
            )
        except Exception as exc:  # the camera may already have dropped it; nothing to undo
            logger.debug("camera %s: unsubscribe failed: %s", self.device_id, classify_error(exc))

    async def _call(
        self,
        url: str,
        action: str,
        body: str,
        *,
        reference_parameters: tuple[bytes, ...] = (),
        deadline: float | None = None,
        signed: bool = True,
    ) -> bytes:
        security = None
        if signed:
            created = self._clock() + self._offset
            security = soap.username_token(self._credentials, secrets.token_bytes(16), created)
        document = soap.envelope(
            body,
            action=action,
            to=url,
            security=security,
            reference_parameters=reference_parameters,
            message_id=f"urn:uuid:{secrets.token_hex(16)}",
        )
        try:
            answer = await self._http.post(
                url,
                document,
                {"Content-Type": soap.content_type(action)},
                pinned=(self.host, self.port),
                deadline=deadline or self._settings.call_timeout,
            )
        except (CameraRequestError, ResponseTooLarge, ForeignHostRefused) as exc:
            raise classify_error(exc) from exc
        if answer.status != 200:
            fault = None
            with contextlib.suppress(XmlRefused):
                fault = parse_soap_fault(answer.body) if answer.body.strip() else None
            if fault is not None:
                raise classify_error(fault) from fault
            kind = ProbeFailure.AUTH if answer.status in (401, 403) else ProbeFailure.PROTOCOL
            raise ProbeError(kind, f"HTTP {answer.status} from {redact_uri(url)}")
        return answer.body

    def _update(self, **changes: Any) -> None:
        self._health = replace(self._health, **changes)


class EventSubmitError(Exception):
    """`submit` raised: the channel stops instead of dropping events (cause attached)."""


def _lifetime(times: SubscriptionTimes, requested: timedelta) -> timedelta:
    remaining = times.remaining()
    if remaining is None or remaining <= timedelta(0):
        return requested
    return min(remaining, requested * 10)


# ---------------------------------------------------------------------------
# Many cameras


class EventChannelManager:
    """Event channels for thousands of cameras: one task each, one connection pool.

    Subscription set-up (clock read, event service lookup, CreatePullPoint) is
    bounded by a semaphore so a hub restart does not storm the network; the
    long-polls themselves are bounded by the pool's connection limit.
    """

    def __init__(
        self,
        submit: Submit,
        *,
        settings: EventChannelSettings | None = None,
        max_concurrent_setups: int = 32,
        http: CameraHttp | None = None,
        registry: TopicRegistry = PARSERS,
        clock: Clock = _utcnow,
    ) -> None:
        if max_concurrent_setups <= 0:
            raise ValueError("max_concurrent_setups must be positive")
        self._submit = submit
        self._settings = settings or EventChannelSettings()
        self._setup_limiter = asyncio.Semaphore(max_concurrent_setups)
        self._own_http = http is None
        self._http = http or CameraHttp()
        self._registry = registry
        self._clock = clock
        self._channels: dict[str, EventSubscription] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __len__(self) -> int:
        return len(self._channels)

    def add(
        self,
        device_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        events_xaddr: str | None = None,
        policy: PinPolicy = PinPolicy.REWRITE,
    ) -> None:
        """Start the event channel of one camera (replacing none: remove first)."""
        if device_id in self._channels:
            raise ValueError(f"camera {device_id} already has an event channel")
        channel = EventSubscription(
            device_id,
            host,
            port,
            username,
            password,
            self._submit,
            events_xaddr=events_xaddr,
            settings=self._settings,
            policy=policy,
            http=self._http,
            setup_limiter=self._setup_limiter,
            registry=self._registry,
            clock=self._clock,
        )
        self._channels[device_id] = channel
        channel.start()

    async def remove(self, device_id: str) -> None:
        """Stop and forget one camera's channel."""
        channel = self._channels.pop(device_id, None)
        if channel is not None:
            await channel.stop()

    def health(self) -> dict[str, ChannelHealth]:
        """Health snapshot of every channel, by device id."""
        return {device_id: channel.health() for device_id, channel in self._channels.items()}

    async def close(self) -> None:
        """Stop every channel and close the shared pool."""
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.stop() for channel in channels))
        if self._own_http:
            await self._http.aclose()


# ---------------------------------------------------------------------------
# WS-Discovery

_WSD_MULTICAST = ("239.255.255.250", 3702)


def _probe_message() -> bytes:
    from wsdiscovery.actions.probe import constructProbe
    from wsdiscovery.message import createSOAPMessage
    from wsdiscovery.qname import QName

    env = constructProbe(
        [QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")], []
    )
    return str(createSOAPMessage(env)).encode()


def _discover_blocking(
    interface_ip: str, timeout: float, target: tuple[str, int]
) -> list[tuple[bytes, str]]:
    message = _probe_message()
    replies: list[tuple[bytes, str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        # Bound to the chosen interface on an ephemeral port: we never listen on 3702.
        sock.bind((interface_ip, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface_ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.sendto(message, target)
        loop_deadline = time.monotonic() + timeout
        while len(replies) < 10_000:
            remaining = loop_deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                data, (address, _port) = sock.recvfrom(65535)
            except TimeoutError:
                break
            replies.append((data, str(address)))
    return replies


async def discover(
    interface_ip: str,
    timeout: float = 3.0,  # noqa: ASYNC109 - how long to collect answers, used in the thread
    *,
    target: tuple[str, int] = _WSD_MULTICAST,
) -> list[Candidate]:
    """WS-Discovery probe for ONVIF cameras from one local interface address.

    The socket work runs in a worker thread. Replies that are not valid
    ProbeMatches are logged and skipped; duplicates (by endpoint) are merged.
    """
    replies = await asyncio.to_thread(_discover_blocking, interface_ip, timeout, target)
    found: dict[str, Candidate] = {}
    for data, responder in replies:
        try:
            candidates = parse_probe_matches(data, responder)
        except XmlRefused as exc:
            logger.info("discovery: unusable answer from %s: %s", responder, exc)
            continue
        for candidate in candidates:
            found.setdefault(candidate.endpoint, candidate)
    return list(found.values())
