"""The contracts services receive: `Adapter` (a device-protocol service) and `Sink`
(where the outbox dispatcher hands a message).

Both are `typing.Protocol`s: the project's adapters satisfy them structurally,
and a test hands in a fake of its own to exercise everything above them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Adapter", "Sink"]


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
