"""The contracts services receive: `Adapter` (a device-protocol service) and `Sink`
(where the outbox dispatcher hands a message).

Both are `typing.Protocol`s: the project's adapters satisfy them structurally,
and a test hands in a fake of its own to exercise everything above them. The hub
starts and stops every device-protocol service it runs (its own MQTT, broadcast,
patrol, ONVIF, evidence and GB/T 28181 services, and any handed to it as an
`AdapterFactory`) through `Adapter` alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from camera_registry.events import DeviceEvent, RejectedMessage

__all__ = ["Adapter", "AdapterFactory", "OnCommitted", "Sink", "Submit"]

#: Called once the submitted event is committed (an MQTT adapter sends its PUBACK here).
OnCommitted = Callable[[], None]
#: Hands one event or rejected message to the hub's event writer; waits while it is full.
Submit = Callable[[DeviceEvent | RejectedMessage, OnCommitted | None], Awaitable[None]]


@runtime_checkable
class Adapter(Protocol):
    """A device-protocol service (MQTT, ONVIF, patrol, GB/T 28181…): started with the
    hub, stopped before the event writer drains; it hands `DeviceEvent`s to the writer
    it was given."""

    async def start(self) -> None:
        """Begin receiving from devices."""
        ...

    async def stop(self) -> None:
        """Stop receiving; what was handed to the writer is not lost."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Where the dispatcher hands one outbox message (webhook, CAP, AMQP, MQTT, broadcast)."""

    name: str

    async def start(self) -> None:
        """Prepare (connect lazily if preferred)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def deliver(self, message_id: str, body: bytes, content_type: str) -> str:
        """Deliver one message; return a receipt or raise `DeliveryFailed`."""
        ...


#: Builds an adapter around the hub's `Submit` (the hub calls it while it is assembled).
AdapterFactory = Callable[[Submit], Adapter]
