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

__all__ = [
    "ConfigError",
    "HttpSettings",
    "LoggingSettings",
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
        5.0, ge=0, le=1000, description="How long a batch waits to fill before it commits."
    )


class LoggingSettings(_Section):
    """Log output; secrets are redacted from every line whatever the level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    json_lines: bool = Field(False, description="One JSON object per line instead of text.")


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
    http: HttpSettings = Field(default_factory=HttpSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

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
