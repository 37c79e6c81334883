"""AMQP 0-9-1 delivery (RabbitMQ) with publisher confirms.

A message counts as delivered only when the broker confirms it (basic.ack):
the queue is durable, messages are persistent, and publishing is `mandatory`
so a message the broker cannot route comes back as a failure instead of
vanishing. A lost connection fails the attempt; the next attempt reconnects.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import aio_pika.abc
import aiormq.exceptions

from adapters.sinks.errors import DeliveryFailed

__all__ = ["AmqpSink"]

log = logging.getLogger(__name__)


class AmqpSink:
    """Publishes each message to one durable queue through the default exchange."""

    def __init__(self, name: str, url: str, queue: str, *, timeout_s: float = 5.0) -> None:
        self.name = name
        self._url = url
        self._queue = queue
        self._timeout = timeout_s
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to do up front: the connection opens on the first delivery."""

    async def _connect(self) -> aio_pika.abc.AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        await self._drop()
        connection = await aio_pika.connect(self._url, timeout=self._timeout)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(self._queue, durable=True)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel = connection, channel
        return channel

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except (TimeoutError, aiormq.exceptions.AMQPError, OSError):
                log.debug("closing a broken AMQP connection failed", exc_info=True)

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._drop()

    async def deliver(self, message_id: str, body: bytes, content_type: str) -> str:
        """Publish and wait for the broker's confirm; raise DeliveryFailed otherwise."""
        async with self._lock:
            try:
                channel = await asyncio.wait_for(self._connect(), self._timeout)
                confirm = await channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type=content_type,
                        message_id=message_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self._queue,
                    mandatory=True,
                    timeout=self._timeout,
                )
            except aio_pika.exceptions.DeliveryError as exc:
                raise DeliveryFailed(f"broker refused the message: {exc.frame}") from exc
            except (TimeoutError, aiormq.exceptions.AMQPError, OSError) as exc:
                await self._drop()
                raise DeliveryFailed(f"AMQP publish not confirmed: {type(exc).__name__}") from exc
        if not isinstance(confirm, aiormq.spec.Basic.Ack):
            raise DeliveryFailed(f"broker did not acknowledge: {type(confirm).__name__}")
        return f"amqp confirmed (queue {self._queue})"
