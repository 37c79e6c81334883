"""Typed configuration: a YAML file, overridden by `GRIDWATCH_…` environment variables.

Every model forbids unknown keys, so a typo in a config file is an error with
its path (`storage.retention_days: …`) rather than a silently ignored setting.
Nested keys are reached from the environment with a double underscore:
`GRIDWATCH_STORAGE__URL=postgresql://…`, `GRIDWATCH_HTTP__PORT=9000`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adapters.mqtt.models import MqttSettings
from hub.alarms.config import AlarmSettings
from hub.cluster.config import ClusterSettings
from hub.departments.config import DepartmentSettings
from hub.devices.patrol_config import PatrolSettings
from hub.evidence.config import EvidenceSettings
from hub.gb28181.config import Gb28181Settings
from hub.node import NODE_ID_PATTERN
from hub.onvif.config import OnvifSettings

__all__ = [
    "AuthSettings",
    "ConfigError",
    "HttpSettings",
    "LiveSettings",
    "LoggingSettings",
    "MqttHubSettings",
    "RegistrySettings",
    "SecuritySettings",
    "Settings",
    "StorageSettings",
    "WriterSettings",
    "example_config",
    "format_errors",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    """Where the HTTP API and console listen."""

    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 exposes the hub.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the API and console.")


class StorageSettings(_Section):
    """Where events, devices and alarms are kept."""

    url: SecretStr | None = Field(
        None,
        description=(
            "postgresql://user:pass@host:5432/db for PostgreSQL/TimescaleDB, "
            "or sqlite:///path/to/file.sqlite3; empty = SQLite in data_dir."
        ),
    )
    pool_size: int = Field(8, ge=1, le=200, description="PostgreSQL connections in the pool.")
    retention_days: int = Field(
        180, ge=1, le=3650, description="Events older than this many days are dropped."
    )
    compress_after_days: int = Field(
        7, ge=1, le=3650, description="TimescaleDB compresses event chunks older than this."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        raw = value.get_secret_value()
        if not raw.startswith(("postgresql://", "postgres://", "sqlite://")):
            raise ValueError("must start with postgresql://, postgres:// or sqlite://")
        return value


class WriterSettings(_Section):
    """The batched event writer between adapters and storage."""

    queue_size: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description="Events waiting for a commit before producers wait.",
    )
    batch_max: int = Field(2_000, ge=1, le=100_000, description="Most events in one commit.")
    batch_delay_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description=(
            "How long a lone event waits for company before its commit; events that"
            " queued up during the previous commit are committed at once."
        ),
    )


class LoggingSettings(_Section):
    """Log output; secrets are redacted from every line whatever the level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    json_lines: bool = Field(False, description="One JSON object per line instead of text.")
    http_client_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description=(
            "Level of the HTTP client libraries (httpx, httpcore): at INFO they log one "
            "line per camera request, about 1,400 lines/s for a district of 6,000 cameras."
        ),
    )


class AuthSettings(_Section):
    """Logins, sessions, API keys and the audit log."""

    session_idle_minutes: int = Field(
        30, ge=1, le=1440, description="A console session ends after this long without use."
    )
    session_max_hours: int = Field(
        12, ge=1, le=168, description="A console session ends this long after login, used or not."
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto",
        description=(
            "Mark session cookies Secure: auto = when the request came over HTTPS "
            "(behind a TLS proxy, run uvicorn with --proxy-headers)."
        ),
    )
    lockout_threshold: int = Field(
        5, ge=1, le=100, description="Failed logins in a row that lock an account."
    )
    lockout_minutes: int = Field(15, ge=1, le=1440, description="How long a locked account waits.")
    password_min_length: int = Field(
        12, ge=12, le=128, description="Shortest password accepted (never below 12)."
    )
    audit_retention_days: int = Field(
        365, ge=180, le=3650, description="Audit rows are kept this many days (at least 180)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Extra origins (https://host:port) allowed to open WebSockets; "
            "the hub's own origin is always allowed."
        ),
    )
    metrics_from_loopback: bool = Field(
        True,
        description=(
            "Serve /metrics without login to callers on 127.0.0.1/::1 "
            "(others need an admin or maintenance login or API key)."
        ),
    )


class LiveSettings(_Section):
    """WebRTC live view: one RTSP pull per camera, relayed to every viewer."""

    max_viewers_per_camera: int = Field(
        8, ge=1, le=100, description="Viewers of one camera at once."
    )
    max_viewers_total: int = Field(
        32, ge=1, le=1000, description="Viewers of all cameras at once on this hub."
    )
    passthrough_h264: bool = Field(
        True,
        description="Relay the camera's H.264 without re-encoding when the browser accepts it.",
    )
    idle_close_seconds: float = Field(
        5.0, ge=0, le=600, description="Keep a camera pull this long after its last viewer left."
    )


class MapSettings(_Section):
    """The console's map. Without a tile server it draws the jurisdiction boundaries only."""

    tile_url: str | None = Field(
        None,
        max_length=1000,
        pattern=r"^(https?://|/)[^\s]*\{z\}[^\s]*$",
        description="Tile URL template with {z}/{x}/{y} (and {s} for subdomains): the site's "
        "own tile server, or a 天地图 template with its tk key; empty means no base map.",
    )
    subdomains: str = Field(
        "abc", max_length=16, description="Letters or digits substituted for {s}, e.g. 01234567."
    )
    attribution: str = Field("", max_length=300, description="Credit shown for the tiles.")
    max_zoom: int = Field(18, ge=1, le=22, description="The tile server's deepest zoom level.")
    center_latitude: float | None = Field(None, ge=-90, le=90, description="Start centre.")
    center_longitude: float | None = Field(None, ge=-180, le=180, description="Start centre.")
    zoom: int = Field(11, ge=1, le=22, description="Start zoom (until boundaries are drawn).")


class MqttHubSettings(_Section, MqttSettings):
    """MQTT devices (school panic buttons, broadcast units): the broker and command limits."""

    enabled: bool = Field(
        False, description="Connect to the MQTT broker; off so a hub without a broker starts."
    )
    command_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Seconds to wait for a broadcast unit's ack per attempt."
    )
    command_retries: int = Field(
        2, ge=0, le=10, description="Resends of a broadcast command that got no ack."
    )
    device_refresh_s: float = Field(
        2.0, gt=0, le=3600, description="How often the registry is checked for device changes."
    )
    heartbeat_missed_intervals: int = Field(
        3, ge=1, le=100, description="A device is offline after this many silent intervals."
    )
    heartbeat_grace_intervals: float = Field(
        0.5,
        ge=0,
        le=5,
        description=(
            "Further fraction of an interval a device may be late before the last missed "
            "heartbeat counts (3 missed + 0.5 at 20 s: offline 70 s after last heard)."
        ),
    )

    def adapter_settings(self) -> MqttSettings:
        """The adapter's own settings (without the hub's switches)."""
        hub_only = {"enabled", "command_timeout_s", "command_retries", "device_refresh_s"}
        fields = [name for name in MqttSettings.model_fields if name not in hub_only]
        return MqttSettings.model_validate({name: getattr(self, name) for name in fields})


class SecuritySettings(_Section):
    """Where the key that encrypts device credentials comes from (never the database)."""

    credentials_key_file: Path = Field(
        Path("keys/credentials.key"),
        description=(
            "File with the credential encryption key (created 0600 on first start); "
            "a relative path is under data_dir. GRIDWATCH_CREDENTIALS_KEY (base64) "
            "overrides it."
        ),
    )


class RegistrySettings(_Section):
    """The device registry: camera linkage for alarm points and broadcast units."""

    linkage_radius_m: float = Field(
        300.0, gt=0, le=50_000, description="Nearby cameras are offered within this radius."
    )
    linkage_limit: int = Field(5, ge=1, le=100, description="Most nearby cameras offered.")


class Settings(BaseSettings):
    """The whole hub configuration."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(
        Path("data"), description="Directory for the SQLite database, media and keys."
    )
    node_id: str | None = Field(
        None,
        pattern=NODE_ID_PATTERN,
        description="This node's name, stable across restarts (outbox claims carry it); "
        "empty = made once and kept in data_dir/node_id. Unique per running node.",
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    mqtt: MqttHubSettings = Field(
        default_factory=MqttHubSettings, description="MQTT panic buttons and broadcast units."
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    map: MapSettings = Field(default_factory=MapSettings, description="The console's map.")
    alarms: AlarmSettings = Field(
        default_factory=AlarmSettings, description="Alarm rules, SLA, linkage and delivery sinks."
    )
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    patrol: PatrolSettings = Field(
        default_factory=PatrolSettings,
        description="Camera stream health patrol and video-quality diagnosis.",
    )
    onvif: OnvifSettings = Field(
        default_factory=OnvifSettings,
        description="ONVIF cameras: probe, WS-Discovery and PullPoint event channels.",
    )
    departments: DepartmentSettings = Field(
        default_factory=DepartmentSettings,
        description="Department tasks: deadlines, dispatch rules, delivery to departments.",
    )
    evidence: EvidenceSettings = Field(
        default_factory=EvidenceSettings,
        description="Pre-alarm video buffers and evidence clips cut on alarm.",
    )
    gb28181: Gb28181Settings = Field(
        default_factory=Gb28181Settings,
        description="GB/T 28181 platform: SIP registrar, catalog, alarms and live video.",
    )
    cluster: ClusterSettings = Field(
        default_factory=ClusterSettings,
        description="Several hub nodes over one PostgreSQL: heartbeats, singleton jobs, "
        "work split (a SQLite hub is one node).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file's values (passed as init kwargs).
        return (env_settings, init_settings)

    def storage_url(self) -> str:
        """The effective storage URL (SQLite in data_dir when none is configured)."""
        if self.storage.url is not None:
            return self.storage.url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'gridwatch.sqlite3').as_posix()}"

    def credentials_key_path(self) -> Path:
        """The credential key file (data_dir/keys/credentials.key unless configured)."""
        return self.data_dir / self.security.credentials_key_file


class ConfigError(Exception):
    """A configuration file that cannot be used; `problems` lists `path: message` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def format_errors(error: ValidationError) -> list[str]:
    """Turn a pydantic error into `dotted.path: message` lines, one per problem."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{path}: {item['msg']}")
    return lines


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}: {exc}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections"])
    return data


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from an optional YAML file, then the environment, then `overrides`."""
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from exc


def _example_lines(model: type[BaseModel], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for name, field in model.model_fields.items():
        if field.description:
            lines.append(f"{pad}# {field.description}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.extend(_example_lines(annotation, indent + 1))
            continue
        default = field.get_default(call_default_factory=True)
        if default is None:
            lines.append(f"{pad}# {name}:")
            continue
        if isinstance(default, Path):
            default = default.as_posix()
        rendered = yaml.safe_dump({name: default}, allow_unicode=True, default_flow_style=True)
        lines.append(pad + rendered.strip().removeprefix("{").removesuffix("}"))
    return lines


def example_config() -> str:
    """A commented YAML example with every setting at its default; it passes `config check`."""
    header = [
        "# GridWatch configuration. Every key is optional; shown values are the defaults.",
        "# Environment variables override the file: GRIDWATCH_STORAGE__URL, GRIDWATCH_HTTP__PORT…",
    ]
    return "\n".join(header + _example_lines(Settings, 0)) + "\n"
