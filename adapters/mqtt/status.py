"""What the MQTT adapter reports: connection state, broadcast command results, counters,
and the callback types it is built with.

Plain types shared by `adapters.mqtt.client` and the hub's MQTT and broadcast services.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from adapters.mqtt.models import (
    BroadcastCommand,
)
from camera_registry.events import DeviceEvent, RejectedMessage

OnCommitted = Callable[[], None]
#: Enqueue an event for the writer; may wait (backpressure). Calls `on_committed` on the
#: event loop thread once the event is durably committed or known as a duplicate.
Submit = Callable[[DeviceEvent | RejectedMessage, OnCommitted | None], Awaitable[None]]


class ConnectionState(StrEnum):
    """Where the adapter's broker connection is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """The connection state, why, and since when."""

    state: ConnectionState
    since: datetime
    reason: str | None = None
    session_present: bool = False


class CommandOutcome(StrEnum):
    """How a broadcast command ended."""

    ACKED = "acked"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The recorded end of a broadcast command."""

    correlation_id: str
    unit_id: str
    command: BroadcastCommand
    outcome: CommandOutcome
    attempts: int
    sent_at: datetime
    finished_at: datetime
    reason: str | None = None


class UnknownUnitError(LookupError):
    """A command was addressed to a device that is not a registered broadcast unit."""


@dataclass
class AdapterMetrics:
    """Counters for the metrics endpoint; plain attributes, updated on the loop thread."""

    received: int = 0
    events: int = 0
    acked: int = 0
    stale_acks: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    refusals: int = 0
    subscriptions_refused: int = 0
    disconnects: int = 0
    commands_sent: int = 0
    commands: Counter[str] = field(default_factory=Counter)
