"""Device records at the API and storage boundary, and URL credential hygiene.

`DeviceIn` is what callers write (API body, import row); `Device` is what is read
back. Credentials are write-only: `DeviceIn.credentials` is never dumped, and
`Device` carries only `has_credentials`. URLs never carry ``user:password@``:
writes that contain one are refused, and `strip_credentials` cleans any URL
before it is stored, logged or exported.

Validation errors from these models hide the input value
(``hide_input_in_errors``), so a refused ``rtsp://admin:secret@...`` does not end
up in a log line through ``str(exc)``. Callers that render ``exc.errors()`` must
pass ``include_input=False`` for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from camera_registry._kinds import DeviceKind
from camera_registry.events import validate_device_id
from camera_registry.gb28181 import GbId, looks_like_gb_id
from camera_registry.jurisdiction import JurisdictionCodeStr

__all__ = [
    "KNOWN_PROJECTS",
    "Credentials",
    "Device",
    "DeviceFields",
    "DeviceIdStr",
    "DeviceIn",
    "DeviceKind",
    "HealthState",
    "Project",
    "gb_id_of",
    "normalize_project",
    "strip_credentials",
    "url_has_credentials",
    "validate_registry_device_id",
]


class Project(StrEnum):
    """Well-known projects a device was installed under; other text is allowed too."""

    SHARP_EYES = "sharp_eyes"
    CLOUD_EYE = "cloud_eye"
    SCHOOL_ALARM = "school_alarm"
    BROADCAST = "broadcast"
    SMART_COMMUNITY = "smart_community"


KNOWN_PROJECTS: frozenset[str] = frozenset(p.value for p in Project)


class HealthState(StrEnum):
    """A device's liveness as the hub last judged it."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


# ---------------------------------------------------------------------------
# URL credentials

_URL_TERMINATORS = re.compile(r"[/?#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# "@" followed by what can only be a host: an IP literal, a dotted name or localhost,
# then an optional port and the end of the authority.
_AT_HOST = re.compile(
    r"@(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+|localhost)(?::\d*)?(?=$|[/?#])"
)


def _userinfo_end(url: str) -> int | None:
    """Index just past the ``userinfo@`` of `url`, or None if it has none.

    A password with an unescaped ``/``, ``?`` or ``#`` ends the authority early as
    RFC 3986 reads it, so a later ``@`` followed by a host also counts as the end
    of the userinfo. That can cut a URL whose path or query holds ``@example.com``
    too short; it can never leave a password in place.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    start = scheme_end + 3
    terminator = _URL_TERMINATORS.search(url, start)
    end = terminator.start() if terminator else len(url)
    cut = url.rfind("@", start, end) + 1 or None
    later = [m.start() + 1 for m in _AT_HOST.finditer(url, end)]
    return later[-1] if later else cut


def strip_credentials(url: str) -> str:
    """Return `url` without any ``user[:password]@`` part; everything else is kept."""
    cut = _userinfo_end(url)
    if cut is None:
        return url
    start = url.find("://") + 3
    return url[:start] + url[cut:]


def url_has_credentials(url: str) -> bool:
    """True if `url` carries a ``user[:password]@`` part."""
    return _userinfo_end(url) is not None


def _url_validator(schemes: tuple[str, ...], label: str) -> Any:
    def check(value: str) -> str:
        if url_has_credentials(value):
            raise ValueError(
                f"{label} must not carry credentials (user:password@); put them in "
                f"'credentials' instead: {strip_credentials(value)}"
            )
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in schemes or not rest or rest[0] in "/?#":
            raise ValueError(
                f"{label} must be a {' or '.join(s + '://' for s in schemes)} URL with a host"
            )
        if _SPACE_OR_CONTROL.search(value):
            raise ValueError(f"{label} must not contain spaces or control characters")
        return value

    return AfterValidator(check)


# ---------------------------------------------------------------------------
# Field types


def validate_registry_device_id(value: str | GbId) -> str:
    """Return a registry device id: a valid GB/T 28181 code or a safe free id.

    Twenty digits are taken to be meant as a GB/T 28181 code and must be a valid
    one; anything else must match ``[A-Za-z0-9_.-]{1,64}``.
    """
    if isinstance(value, GbId):
        return value.value
    if isinstance(value, str) and looks_like_gb_id(value):
        return GbId(value).value
    return validate_device_id(value)


def gb_id_of(device_id: str) -> GbId | None:
    """Return the device id as a GbId if it is one, else None."""
    return GbId(device_id) if looks_like_gb_id(device_id) else None


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (tabs, line breaks ...)")
    return value


#: A registry device id inside pydantic models (a validated `str`; GbId accepted).
DeviceIdStr = Annotated[str, BeforeValidator(validate_registry_device_id)]


_CLEAN = (BeforeValidator(_strip), AfterValidator(_no_control_characters))
#: Stripped single-line text of 1..N characters.
Text64 = Annotated[str, StringConstraints(min_length=1, max_length=64), *_CLEAN]
Text128 = Annotated[str, StringConstraints(min_length=1, max_length=128), *_CLEAN]
Text256 = Annotated[str, StringConstraints(min_length=1, max_length=256), *_CLEAN]
_TAG_PATTERN = re.compile(r"^[^,;，；\s]{1,32}$")
_MQTT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def normalize_project(value: str) -> str:
    """Return the well-known project value for `value` (any case), else `value`."""
    lowered = value.strip().lower().replace("-", "_").replace(" ", "_")
    return lowered if lowered in KNOWN_PROJECTS else value.strip()


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


class Credentials(BaseModel):
    """A device login. Accepted on write, encrypted at rest, never returned."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: Text64 = Field(description="device login name")
    password: SecretStr = Field(min_length=1, max_length=128, description="write-only")


_BASE_CONFIG = ConfigDict(
    extra="forbid",
    frozen=True,
    hide_input_in_errors=True,
    str_strip_whitespace=True,
)


class DeviceFields(BaseModel):
    """The fields a device has in both the write and the read model."""

    model_config = _BASE_CONFIG

    id: DeviceIdStr = Field(
        description="GB/T 28181 20-digit code, or a free id [A-Za-z0-9_.-]{1,64}"
    )
    name: Text128 = Field(
        description="what operators call the device, e.g. 新华大街与中山路口东北角"
    )
    kind: DeviceKind
    project: Text64 | None = Field(
        default=None,
        description="sharp_eyes, cloud_eye, school_alarm, broadcast, smart_community or free text",
    )
    jurisdiction: JurisdictionCodeStr | None = Field(
        default=None, description="code of the jurisdiction node the device belongs to"
    )
    latitude: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    longitude: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address: Text256 | None = None
    vendor: Text64 | None = None
    model: Text64 | None = None
    firmware: Text64 | None = None
    serial: Text64 | None = Field(default=None, description="manufacturer serial number")
    onvif_url: Annotated[str, _url_validator(("http", "https"), "ONVIF URL")] | None = Field(
        default=None, max_length=512
    )
    rtsp_urls: list[
        Annotated[str, Field(max_length=512), _url_validator(("rtsp", "rtsps"), "RTSP URL")]
    ] = Field(default_factory=list, max_length=16)
    mqtt_device_id: str | None = Field(default=None, pattern=_MQTT_ID_PATTERN.pattern)
    tags: list[Annotated[str, Field(pattern=_TAG_PATTERN.pattern)]] = Field(
        default_factory=list, max_length=32
    )
    enabled: bool = True
    linked_cameras: list[DeviceIdStr] = Field(
        default_factory=list,
        max_length=64,
        description="cameras shown with this alarm point's or broadcast unit's events",
    )

    @field_validator("project")
    @classmethod
    def _known_project(cls, value: str | None) -> str | None:
        return None if value is None else normalize_project(value)

    @field_validator("rtsp_urls", "tags", "linked_cameras")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        return _dedupe(values)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceFields:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude must be given together")
        gb_id = gb_id_of(self.id)
        implied = gb_id.device_kind if gb_id is not None else None
        if gb_id is not None and implied is not None and implied != self.kind:
            raise ValueError(
                f"GB/T 28181 type code {gb_id.type_code:03d} ({gb_id.type_name}) "
                f"is a {implied}, but kind is {self.kind}"
            )
        if self.linked_cameras:
            if self.kind not in (DeviceKind.ALARM_POINT, DeviceKind.BROADCAST_UNIT):
                raise ValueError("only alarm points and broadcast units have linked cameras")
            if self.id in self.linked_cameras:
                raise ValueError("a device cannot be linked to itself")
        return self

    @property
    def gb_id(self) -> GbId | None:
        """The id as a GbId, if it is a GB/T 28181 code."""
        return gb_id_of(self.id)


class DeviceIn(DeviceFields):
    """A device as written by the API or an import (create or full update)."""

    credentials: Credentials | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="write-only; never dumped, stored encrypted",
    )

    @classmethod
    def from_device(cls, device: DeviceFields) -> DeviceIn:
        """The writable part of a read record (credentials are never read back)."""
        return cls.model_validate(device.model_dump(include=set(DeviceFields.model_fields)))


class Device(DeviceFields):
    """A device as read back: no credentials, only whether some are stored."""

    has_credentials: bool = False
    created_at: AwareDatetime
    updated_at: AwareDatetime
    health: HealthState | None = None
    health_since: AwareDatetime | None = None

    @classmethod
    def from_input(
        cls,
        device: DeviceIn,
        *,
        created_at: AwareDatetime,
        updated_at: AwareDatetime,
        has_credentials: bool | None = None,
        health: HealthState | None = None,
        health_since: AwareDatetime | None = None,
    ) -> Device:
        """Build the read record for a written device; times come from the caller."""
        fields = device.model_dump(include=set(DeviceFields.model_fields))
        return cls(
            **fields,
            has_credentials=(
                device.credentials is not None if has_credentials is None else has_credentials
            ),
            created_at=created_at,
            updated_at=updated_at,
            health=health,
            health_since=health_since,
        )
