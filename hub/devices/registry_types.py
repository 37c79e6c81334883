"""What the device registry service hands out and raises: actors, changes, outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field

from camera_registry.importer import RowError
from hub.auth.principal import check_actor

__all__ = [
    "Actor",
    "CachedDevice",
    "DeviceChange",
    "ImportOutcome",
    "OutOfScope",
    "RegistryConflict",
    "UnknownJurisdiction",
    "UpsertCounts",
]


class OutOfScope(Exception):
    """The caller may not place a device (or node) where it asked."""


class UnknownJurisdiction(ValueError):
    """A device names a jurisdiction code that is not in the tree."""


class RegistryConflict(Exception):
    """The write clashes with another device (same id elsewhere, MQTT id taken)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, for the audit log (`user:alice`, `system:cli:root`)."""

    name: str
    remote_addr: str | None = None

    def __post_init__(self) -> None:
        check_actor(self.name)


@dataclass(frozen=True, slots=True)
class CachedDevice:
    """What hot paths need to know about a device without a query."""

    id: str
    kind: str
    mqtt_device_id: str | None
    jurisdiction_path: str | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """Devices created, updated or deleted by one committed write."""

    action: str  # "created", "updated", "deleted"
    device_ids: tuple[str, ...]


@dataclass(slots=True)
class UpsertCounts:
    """What a bulk write did (or would do, for a dry run)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(slots=True)
class ImportOutcome:
    """The result of an import: counts, every bad row, and whether it was written."""

    counts: UpsertCounts = field(default_factory=UpsertCounts)
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0
    written: bool = False
    format: str = ""
    encoding: str | None = None
