"""The outbox dispatcher: delivers queued alarm changes to their sinks, at least once.

Rows are claimed with a lease (`claimed_by`/`claimed_until`): on PostgreSQL
with `FOR UPDATE SKIP LOCKED`, so several dispatchers (hub nodes) never send
the same row at once; a dispatcher that dies mid-delivery leaves its rows to
be claimed again when the lease runs out, so nothing is lost (the receiver
recognises the repeat by its idempotency key, `webhook-id` / AMQP message id).
A failed attempt goes back to pending with exponential backoff and full
jitter (`alarms.outbox.after_failure`), and dead after `max_attempts`.
HTTP 410 disables the sink (an operator-visible status) until an operator
re-enables it; its rows wait, pending, for that.

The dispatcher is woken right after every commit that queued rows, and polls
as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from adapters.sinks.amqp import AmqpSink
from adapters.sinks.errors import DeliveryFailed
from adapters.sinks.mqtt import MqttSink
from adapters.sinks.webhook import WebhookSink
from alarms.outbox import after_failure
from hub.alarm_config import DeliverySettings, SinkSettings
from hub.storage.alarms import AlarmRepository, ClaimedDelivery

__all__ = ["BROADCAST_SINK", "Dispatcher", "Sink", "build_sink", "encode_body"]

log = logging.getLogger(__name__)

#: Outbox rows of this sink ask the broadcast feature to play a message on speakers.
BROADCAST_SINK = "broadcast"
_DEFAULT_MAX_ATTEMPTS = 12


class Sink(Protocol):
    """Where the dispatcher hands one message; adapters satisfy it structurally."""

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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build_sink(config: SinkSettings) -> Sink:
    """The sink adapter a configuration entry names."""
    url = config.url.get_secret_value()
    if config.type in ("webhook", "cap"):
        return WebhookSink(
            config.name,
            url,
            [secret.get_secret_value() for secret in config.secrets],
            timeout_s=config.timeout_s,
        )
    if config.type == "amqp":
        return AmqpSink(config.name, url, config.target or "", timeout_s=config.timeout_s)
    return MqttSink(config.name, url, config.target or "", timeout_s=config.timeout_s)


def encode_body(payload: Mapping[str, Any]) -> tuple[bytes, str]:
    """The bytes and content type a stored outbox payload is sent as."""
    cap_xml = payload.get("cap_xml")
    if isinstance(cap_xml, str):
        return cap_xml.encode("utf-8"), "application/cap+xml"
    body = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return body.encode("utf-8"), "application/json"


class Dispatcher:
    """Claims due outbox rows and delivers them through their sinks."""

    def __init__(
        self,
        repository: AlarmRepository,
        settings: DeliverySettings,
        sinks: Mapping[str, tuple[Sink, SinkSettings | None]] | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        worker: str | None = None,
    ) -> None:
        self._repo = repository
        self._settings = settings
        self._sinks: dict[str, tuple[Sink, SinkSettings | None]] = dict(sinks or {})
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.delivered = 0
        self.failed = 0

    @classmethod
    def from_settings(
        cls,
        repository: AlarmRepository,
        settings: DeliverySettings,
        sinks: list[SinkSettings],
        **kwargs: Any,
    ) -> Dispatcher:
        """A dispatcher with one adapter per enabled configured sink."""
        built = {s.name: (build_sink(s), s) for s in sinks if s.enabled}
        return cls(repository, settings, built, **kwargs)

    def add_sink(self, sink: Sink, config: SinkSettings | None = None) -> None:
        """Register a sink built in code (e.g. the broadcast feature's `broadcast` sink)."""
        self._sinks[sink.name] = (sink, config)
        self.wake()

    @property
    def sink_names(self) -> list[str]:
        """Names of the sinks this dispatcher delivers to."""
        return sorted(self._sinks)

    def wake(self) -> None:
        """Look for due rows now (called right after commits that queued rows)."""
        self._wake.set()

    async def start(self) -> None:
        """Start the sinks and the delivery loop."""
        for sink, _ in self._sinks.values():
            await sink.start()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        """Stop the loop (claimed rows return to the queue when their lease ends)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sink, _ in self._sinks.values():
            try:
                await sink.close()
            except Exception:
                log.exception("closing sink %s failed", sink.name)

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox dispatch round failed; retrying")
                busy = 0
            if busy:
                continue
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        timeout = self._settings.poll_interval_s
        with contextlib.suppress(Exception):
            due = await self._repo.next_due(await self._active_sinks())
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _active_sinks(self) -> list[str]:
        disabled = await self._repo.disabled_sinks()
        return [name for name in sorted(self._sinks) if name not in disabled]

    async def run_once(self) -> int:
        """Claim one batch of due rows and deliver them; return how many were tried."""
        now = self._clock()
        claimed = await self._repo.claim(
            self.worker,
            await self._active_sinks(),
            now,
            lease_until=now + timedelta(seconds=self._settings.lease_s),
            limit=self._settings.batch_size,
        )
        if claimed:
            await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def _deliver(self, item: ClaimedDelivery) -> None:
        async with self._slots:
            record = item.record
            sink, config = self._sinks[record.sink]
            body, content_type = encode_body(record.payload)
            try:
                receipt = await sink.deliver(record.idempotency_key, body, content_type)
            except DeliveryFailed as exc:
                await self._failed(item, config, exc.reason, permanent=exc.permanent)
                if exc.gone:
                    await self._repo.set_sink_disabled(
                        record.sink, True, f"receiver answered: {exc.reason}", self._clock()
                    )
                    log.warning(
                        "sink %s disabled: %s; rows wait until an operator re-enables it",
                        record.sink,
                        exc.reason,
                    )
                return
            except Exception as exc:
                log.exception("sink %s crashed on %s", record.sink, record.idempotency_key)
                await self._failed(item, config, f"sink error: {type(exc).__name__}")
                return
            await self._repo.mark_delivered(item.row_id, self._clock(), receipt)
            self.delivered += 1
            log.info("delivered %s (%s)", record.idempotency_key, receipt)

    async def _failed(
        self,
        item: ClaimedDelivery,
        config: SinkSettings | None,
        reason: str,
        *,
        permanent: bool = False,
    ) -> None:
        self.failed += 1
        updated = after_failure(
            item.record,
            self._clock(),
            reason,
            config.max_attempts if config else _DEFAULT_MAX_ATTEMPTS,
            self._rng,
            permanent=permanent,
            base=timedelta(seconds=self._settings.backoff_base_s),
            cap=timedelta(seconds=self._settings.backoff_cap_s),
        )
        await self._repo.mark_failed(item.row_id, self.worker, updated)
        log.warning(
            "delivery %s failed (attempt %d): %s%s",
            item.record.idempotency_key,
            updated.attempts,
            reason,
            "; dead-lettered" if updated.state.value == "dead" else "",
        )
