"""What `alarms.rules.evaluate` decides for one event: open, update or close an alarm,
the linkage an opened alarm asks for, and the device context the rules read.

Plain frozen records the hub's alarm service stores in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from alarms.models import (
    Alarm,
    HistoryEntry,
    Location,
)
from camera_registry.events import validate_device_id


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What the rules need to know about the device an event came from."""

    device_id: str
    kind: str
    project: str | None = None
    jurisdiction: str | None = None
    name: str | None = None
    linked_cameras: tuple[str, ...] = ()
    linked_speakers: tuple[str, ...] = ()
    location: Location | None = None

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if not self.kind:
            raise ValueError("device kind must not be empty")
        object.__setattr__(self, "linked_cameras", tuple(self.linked_cameras))
        object.__setattr__(self, "linked_speakers", tuple(self.linked_speakers))
        for linked in (*self.linked_cameras, *self.linked_speakers):
            validate_device_id(linked)


@dataclass(frozen=True, slots=True)
class LinkagePlan:
    """The linkage actions an opened alarm asks the hub to run."""

    snapshot_cameras: tuple[str, ...] = ()
    broadcast_speakers: tuple[str, ...] = ()
    broadcast_message: str | None = None
    broadcast_volume: int | None = None


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """Store a new alarm and its first history entry, then run `linkage`."""

    alarm: Alarm
    history: HistoryEntry
    rule: str
    linkage: LinkagePlan
    notify: bool = True


@dataclass(frozen=True, slots=True)
class UpdateAlarm:
    """Store the repeated alarm; deliver it only when `notify` is set."""

    alarm: Alarm
    history: HistoryEntry
    notify: bool


@dataclass(frozen=True, slots=True)
class CloseAlarm:
    """Store the auto-closed maintenance alarm (always delivered)."""

    alarm: Alarm
    history: HistoryEntry
    notify: bool = True


Decision = OpenAlarm | UpdateAlarm | CloseAlarm
