"""The outbox dispatcher: delivers queued alarm changes to their sinks, at least once.

Rows are claimed with a lease (`claimed_by`/`claimed_until`): on PostgreSQL
with `FOR UPDATE SKIP LOCKED`, so several dispatchers (hub nodes) never send
the same row at once. Leases are short and extended while the dispatcher holds
the row, so a dispatcher that dies mid-delivery leaves its rows to be claimed
by another node within one lease; the same node, started again under its
stable node id, takes them back at once. Nothing is lost (the receiver
recognises the repeat by its idempotency key, `webhook-id` / AMQP message id).
A failed attempt goes back to pending with exponential backoff and full
jitter (`alarms.outbox.after_failure`), and dead after `max_attempts`.
HTTP 410 disables the sink (an operator-visible status) until an operator
re-enables it; its rows wait, pending, for that. The dispatcher knows it the
moment the answer arrives, so no row of its own that was waiting for a
delivery slot is sent to that sink afterwards.

A dispatcher never works on a row past its lease: an attempt that has not
finished shortly before the lease ends (the lease could not be extended) is
abandoned (and counted as failed), and a claimed row still waiting for a
delivery slot that late is given back, so another dispatcher reclaiming the
row cannot send it at the same time.

The dispatcher is woken right after every commit that queued rows, and polls
as a safety net. It keeps the outbox gauges of `hub.metrics` up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from adapters.sinks.amqp import AmqpSink
from adapters.sinks.errors import DeliveryFailed
from adapters.sinks.mqtt import MqttSink
from adapters.sinks.webhook import WebhookSink
from alarms.outbox import OutboxState, after_failure
from hub.alarms import outbox_storage
from hub.alarms.config import DeliverySettings, SinkSettings
from hub.alarms.outbox_storage import ClaimedDelivery
from hub.clock import utcnow
from hub.contracts import Sink
from hub.metrics import Metrics
from hub.storage.base import SqlStore

__all__ = ["BROADCAST_SINK", "Dispatcher", "Sink", "build_sink", "encode_body"]

log = logging.getLogger(__name__)

#: Outbox rows of this sink ask the broadcast feature to play a message on speakers.
BROADCAST_SINK = "broadcast"
_DEFAULT_MAX_ATTEMPTS = 12
# An attempt ends this long (at most) before its lease, leaving time to record it.
_LEASE_MARGIN_S = 1.0
# The outbox gauges are re-counted at most this often.
_GAUGE_REFRESH_S = 1.0


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


def encode_body(
    payload: Mapping[str, Any], idempotency_key: str | None = None
) -> tuple[bytes, str]:
    """The bytes and content type a stored outbox payload is sent as.

    A JSON body carries its `idempotency_key`, so a receiver without message
    headers (an MQTT v3 subscriber) can still recognise a repeat.
    """
    cap_xml = payload.get("cap_xml")
    if isinstance(cap_xml, str):
        return cap_xml.encode("utf-8"), "application/cap+xml"
    document = dict(payload)
    if idempotency_key is not None:
        document["idempotency_key"] = idempotency_key
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return body.encode("utf-8"), "application/json"


@dataclasses.dataclass
class _Lease:
    """How long this dispatcher may still work on one claimed row."""

    until: datetime
    timer: asyncio.Timeout | None = None


class Dispatcher:
    """Claims due outbox rows and delivers them through their sinks.

    `worker` names the claims: give the node's stable id (see `hub.node`) so a
    restarted node takes back the rows it held when it stopped.
    """

    def __init__(
        self,
        store: SqlStore,
        settings: DeliverySettings,
        sinks: Mapping[str, tuple[Sink, SinkSettings | None]] | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        worker: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._sinks: dict[str, tuple[Sink, SinkSettings | None]] = dict(sinks or {})
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._metrics = metrics
        self._gauges_at = -_GAUGE_REFRESH_S
        self._gauged: set[str] = set()
        # Rows claimed and not yet settled, with their lease; extended by _keep_leases.
        self._held: dict[int, _Lease] = {}
        self._keeper: asyncio.Task[None] | None = None
        # Sinks disabled (read each round, and at once when a receiver answers 410).
        self._disabled: set[str] = set()
        self.delivered = 0
        self.failed = 0

    @classmethod
    def from_settings(
        cls,
        store: SqlStore,
        settings: DeliverySettings,
        sinks: list[SinkSettings],
        **kwargs: Any,
    ) -> Dispatcher:
        """A dispatcher with one adapter per enabled configured sink."""
        built = {s.name: (build_sink(s), s) for s in sinks if s.enabled}
        return cls(store, settings, built, **kwargs)

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
            taken = await outbox_storage.take_back(self._store, self.worker, self._clock())
            if taken:
                log.warning("took back %d outbox rows %s held when it stopped", taken, self.worker)
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")
            self._keeper = asyncio.create_task(self._keep_leases(), name="outbox-leases")

    async def stop(self) -> None:
        """Stop the loop (claimed rows return to the queue when their lease ends)."""
        for task in (self._task, self._keeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._keeper = None
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
            await self._refresh_gauges()
            if busy:
                continue
            await self._sleep_until_due()

    async def _refresh_gauges(self, *, force: bool = False) -> None:
        """Re-count the outbox backlog per sink for the gauges (throttled)."""
        if self._metrics is None:
            return
        tick = time.monotonic()
        if not force and tick - self._gauges_at < _GAUGE_REFRESH_S:
            return
        self._gauges_at = tick
        try:
            backlog = await outbox_storage.outbox_backlog(self._store)
        except Exception:
            log.exception("counting the outbox backlog failed")
            return
        sinks = set(self._sinks) | {sink for sink, _ in backlog} | self._gauged
        for sink in sorted(sinks):
            waiting = backlog.get((sink, "pending"), 0) + backlog.get((sink, "delivering"), 0)
            self._metrics.outbox_pending.labels(sink=sink).set(waiting)
            self._metrics.outbox_dead.labels(sink=sink).set(backlog.get((sink, "dead"), 0))
        self._gauged = sinks

    def _count(self, sink: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.outbox_deliveries.labels(sink=sink, outcome=outcome).inc()

    async def _sleep_until_due(self) -> None:
        timeout = self._settings.poll_interval_s
        with contextlib.suppress(Exception):
            due = await outbox_storage.next_due(self._store, await self._active_sinks())
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _active_sinks(self) -> list[str]:
        self._disabled = set(await outbox_storage.disabled_sinks(self._store))
        return [name for name in sorted(self._sinks) if name not in self._disabled]

    def _margin(self) -> float:
        return min(_LEASE_MARGIN_S, self._settings.lease_s / 10)

    async def _keep_leases(self) -> None:
        """Extend the lease of every row this dispatcher holds, a few times per lease."""
        interval = self._settings.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            until = self._clock() + timedelta(seconds=self._settings.lease_s)
            try:
                extended = await outbox_storage.extend_leases(
                    self._store, self.worker, sorted(self._held), until
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                # The attempts in flight end before their current lease does.
                log.exception("extending outbox leases failed")
                continue
            loop = asyncio.get_running_loop()
            for row_id in extended:
                lease = self._held.get(row_id)
                if lease is None:
                    continue
                lease.until = until
                if lease.timer is not None:
                    left = (until - self._clock()).total_seconds() - self._margin()
                    lease.timer.reschedule(loop.time() + left)

    async def run_once(self) -> int:
        """Claim one batch of due rows and deliver them; return how many were tried."""
        now = self._clock()
        lease_until = now + timedelta(seconds=self._settings.lease_s)
        claimed = await outbox_storage.claim(
            self._store,
            self.worker,
            await self._active_sinks(),
            now,
            lease_until=lease_until,
            limit=self._settings.batch_size,
        )
        for item in claimed:
            self._held[item.row_id] = _Lease(lease_until)
        try:
            if claimed:
                await asyncio.gather(*(self._deliver(item) for item in claimed))
        finally:
            for item in claimed:
                self._held.pop(item.row_id, None)
        return len(claimed)

    async def _deliver(self, item: ClaimedDelivery) -> None:
        async with self._slots:
            record = item.record
            sink, config = self._sinks[record.sink]
            if record.sink in self._disabled:
                # Its receiver answered 410 while this row waited for a slot.
                await outbox_storage.release(self._store, item.row_id, self.worker, self._clock())
                self._count(record.sink, "disabled")
                return
            lease = self._held[item.row_id]
            remaining = (lease.until - self._clock()).total_seconds() - self._margin()
            if remaining <= 0:
                # Waited for a slot until the lease nearly ran out: another dispatcher
                # may claim the row any moment, so this one must not start sending it.
                await outbox_storage.release(self._store, item.row_id, self.worker, self._clock())
                self._count(record.sink, "expired")
                return
            limit = config.max_attempts if config else _DEFAULT_MAX_ATTEMPTS
            if record.attempts >= limit:
                # Taken back from expired leases until the attempts ran out: whatever
                # stops its dispatchers, it is not tried again.
                await self._dead_letter(item)
                return
            body, content_type = encode_body(record.payload, record.idempotency_key)
            try:
                try:
                    async with asyncio.timeout(remaining) as timer:
                        lease.timer = timer
                        receipt = await sink.deliver(record.idempotency_key, body, content_type)
                finally:
                    # A finished timeout cannot be moved: the lease keeper must leave it be.
                    lease.timer = None
            except TimeoutError:
                await self._failed(item, config, "no answer before the claim's lease ran out")
                return
            except DeliveryFailed as exc:
                if exc.gone:
                    # Before any await: rows waiting for a slot must not be sent there.
                    self._disabled.add(record.sink)
                await self._failed(item, config, exc.reason, permanent=exc.permanent, gone=exc.gone)
                if exc.gone:
                    await outbox_storage.set_sink_disabled(
                        self._store,
                        record.sink,
                        True,
                        f"receiver answered: {exc.reason}",
                        self._clock(),
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
            await outbox_storage.mark_delivered(self._store, item.row_id, self._clock(), receipt)
            self.delivered += 1
            self._count(record.sink, "delivered")
            log.info("delivered %s (%s)", record.idempotency_key, receipt)

    async def _dead_letter(self, item: ClaimedDelivery) -> None:
        record = dataclasses.replace(item.record, state=OutboxState.DEAD)
        await outbox_storage.mark_failed(self._store, item.row_id, self.worker, record)
        self.failed += 1
        self._count(record.sink, "dead")
        log.error(
            "delivery %s dead-lettered after %d attempts: %s",
            record.idempotency_key,
            record.attempts,
            record.last_error,
        )

    async def _failed(
        self,
        item: ClaimedDelivery,
        config: SinkSettings | None,
        reason: str,
        *,
        permanent: bool = False,
        gone: bool = False,
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
        await outbox_storage.mark_failed(self._store, item.row_id, self.worker, updated)
        dead = updated.state.value == "dead"
        self._count(item.record.sink, "gone" if gone else "dead" if dead else "failed")
        log.warning(
            "delivery %s failed (attempt %d): %s%s",
            item.record.idempotency_key,
            updated.attempts,
            reason,
            "; dead-lettered" if updated.state.value == "dead" else "",
        )
