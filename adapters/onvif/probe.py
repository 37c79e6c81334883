"""Probing a camera: identity, services, media profiles, stream and snapshot addresses.

Uses `onvif-zeep-async` (its WSDLs, its ONVIFCamera service factory and its
clock-adjusted WS-Security digest), with each zeep client's transport
replaced by one that posts through the hardened `CameraHttp` and its parse
settings tightened. Every advertised address is pinned to the configured
camera before use.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import requests
import zeep.exceptions
from requests.structures import CaseInsensitiveDict
from zeep.settings import Settings
from zeep.transports import Transport

from adapters.clock import utcnow
from adapters.onvif.errors import ProbeError, classify_error
from adapters.onvif.http import DEFAULT_TIMEOUT, CameraHttp
from adapters.onvif.models import DeviceInformation, MediaProfile, ProbeFailure, ProbeResult
from adapters.onvif.security import (
    ForeignHostRefused,
    PinPolicy,
    clock_offset,
    format_host,
    pin_uri,
    redact_uri,
    strip_userinfo,
)
from adapters.safexml import parse_untrusted_xml

__all__ = ["Prober", "probe"]

logger = logging.getLogger(__name__)

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


_ZEEP_SETTINGS = Settings(
    strict=False,  # cameras bend the schemas; the XML itself was already checked strictly
    xml_huge_tree=False,
    forbid_dtd=True,
    forbid_entities=True,
    forbid_external=True,
)


class _HardenedZeepTransport(Transport):
    """zeep transport that posts through `CameraHttp` and pre-checks every answer."""

    def __init__(
        self, http: CameraHttp, pinned: tuple[str, int], timeout: float, scheme: str
    ) -> None:
        super().__init__(cache=None, timeout=timeout, operation_timeout=timeout)  # type: ignore[no-untyped-call]
        self._http = http
        self._pinned = pinned
        self._scheme = scheme
        self._timeout = timeout

    async def post_xml(self, address: str, envelope: Any, headers: dict[str, str]) -> Any:
        from zeep.wsdl.utils import etree_to_string

        answer = await self._http.post(
            address,
            etree_to_string(envelope),  # type: ignore[no-untyped-call]
            dict(headers),
            pinned=self._pinned,
            deadline=self._timeout,
            scheme=self._scheme,
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
    devicemgmt: Any, host: str, port: int, scheme: str, policy: PinPolicy, warnings: list[str]
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
            pinned[namespace] = pin_uri(xaddr, host, port, policy=policy, scheme=scheme)
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


def _new_camera(host: str, port: int, scheme: str, username: str, password: str) -> Any:
    # ONVIFCamera drops proxy variables from os.environ; keep the process's own.
    saved = {k: os.environ[k] for k in ("http_proxy", "https_proxy") if k in os.environ}
    try:
        # A host given with its scheme makes the device service address https:// too.
        base = f"{scheme}://{format_host(host)}"
        return _onvif.ONVIFCamera(base, port, username, password, no_cache=True, adjust_time=False)
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
    clock: Clock = utcnow,
    scheme: str = "http",
) -> ProbeResult:
    """Read a camera's identity, services, profiles and stream/snapshot URIs.

    Raises `ProbeError` whose `failure` is auth / unreachable / timeout /
    protocol / refused. Every call has `timeout` seconds; URIs in the result
    are pinned to `host` and carry no credentials.
    """
    own_http = http is None
    client = http or CameraHttp()
    if scheme not in ("http", "https"):
        raise ValueError(f"an ONVIF camera is spoken to over http or https, not {scheme!r}")
    transport = _HardenedZeepTransport(client, (host, port), timeout, scheme)
    camera = _new_camera(host, port, scheme, username, password)
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
        services, refused = await _service_addresses(
            devicemgmt, host, port, scheme, policy, warnings
        )
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
        scheme: str = "http",
    ) -> ProbeResult:
        """`probe()` under the concurrency bound."""
        async with self._semaphore:
            return await probe(
                host,
                port,
                username,
                password,
                timeout=timeout,
                policy=policy,
                http=self._http,
                scheme=scheme,
            )
