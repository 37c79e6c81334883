"""Drills: synthetic panic presses through the real path, timed end to end.

A drill publishes a real MQTT message for a registered panic button (payload
``drill: true``) to the broker the hub listens to, then times each stage the
press passes on its way to people:

1. **publish → committed**: the event is stored (the hub's event bus announces
   events only after their transaction commits);
2. **publish → alarm stream**: the drill alarm's opening reaches the alarm-change
   stream that feeds every console WebSocket;
3. **publish → each sink**: the outbox delivery receipt of every sink configured
   for drills (`alarms.sinks[].drill: true`). Sinks not configured for drills get
   nothing, and the report says so.

Drill alarms carry `is_drill` (the console marks them 演练/DRILL in the queue
and the detail, CAP sends ``status=Exercise``, KPIs leave them out) and are
closed by the drill once measured, so no one has to clear them. A P1 drill
sounds in the console like a real P1 until acknowledged or closed: a drill
exercises the real path, the operator's reaction included; the badge is what
tells it apart. The report gives p50/p99/max per stage and
passes when every stage's maximum stays within the SLO (2 s by default).

Only the event topic is published: a drill never announces a device online or
offline, so the real button's availability is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alarms.models import AlarmAction
from camera_registry.events import DeviceEvent
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.query_storage import deliveries
from hub.auth.principal import system_actor
from hub.bus import EventBus
from hub.config import MqttHubSettings
from hub.mqtt.storage import load_mqtt_devices
from hub.storage import SqlStore

__all__ = ["DrillError", "DrillReport", "DrillRunner", "DrillSample", "StageStats"]

log = logging.getLogger(__name__)

_ACTOR = system_actor("drill")


class DrillError(RuntimeError):
    """The drill could not run (no broker, no panic button, MQTT disabled ...)."""


@dataclass(slots=True)
class DrillSample:
    """One press and when each stage saw it (seconds after the publish)."""

    mqtt_device_id: str
    device_id: str
    msg_id: str
    published_at: datetime
    committed_s: float | None = None
    alarm_stream_s: float | None = None
    alarm_id: str | None = None
    sinks_s: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "mqtt_device_id": self.mqtt_device_id,
            "device_id": self.device_id,
            "msg_id": self.msg_id,
            "published_at": self.published_at.isoformat(),
            "committed_s": self.committed_s,
            "alarm_stream_s": self.alarm_stream_s,
            "alarm_id": self.alarm_id,
            "sinks_s": dict(self.sinks_s),
        }


@dataclass(frozen=True, slots=True)
class StageStats:
    """Latency of one stage over every press."""

    stage: str
    count: int
    missing: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None

    def passed(self, slo_s: float) -> bool:
        """Every press reached the stage, and the slowest within the SLO."""
        return self.missing == 0 and self.max_s is not None and self.max_s <= slo_s


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def stage_stats(stage: str, values: Sequence[float | None]) -> StageStats:
    """p50/p99/max of the values that arrived; `missing` counts those that did not."""
    seen = [v for v in values if v is not None]
    if not seen:
        return StageStats(stage, 0, len(values), None, None, None)
    return StageStats(
        stage,
        len(seen),
        len(values) - len(seen),
        round(_quantile(seen, 0.5), 4),
        round(_quantile(seen, 0.99), 4),
        round(max(seen), 4),
    )


@dataclass(frozen=True, slots=True)
class DrillReport:
    """What a drill measured, and whether it met the SLO."""

    started_at: datetime
    slo_s: float
    samples: tuple[DrillSample, ...]
    drill_sinks: tuple[str, ...]
    skipped_sinks: tuple[str, ...]

    def stages(self) -> list[StageStats]:
        """Latency per stage: committed, alarm stream, then each drill sink."""
        result = [
            stage_stats("committed", [s.committed_s for s in self.samples]),
            stage_stats("alarm_stream", [s.alarm_stream_s for s in self.samples]),
        ]
        for sink in self.drill_sinks:
            result.append(stage_stats(f"sink:{sink}", [s.sinks_s.get(sink) for s in self.samples]))
        return result

    @property
    def passed(self) -> bool:
        """Every stage of every press within the SLO."""
        return bool(self.samples) and all(stage.passed(self.slo_s) for stage in self.stages())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the API's response body)."""
        return {
            "started_at": self.started_at.isoformat(),
            "slo_s": self.slo_s,
            "passed": self.passed,
            "presses": len(self.samples),
            "stages": [
                {
                    "stage": s.stage,
                    "count": s.count,
                    "missing": s.missing,
                    "p50_s": s.p50_s,
                    "p99_s": s.p99_s,
                    "max_s": s.max_s,
                    "passed": s.passed(self.slo_s),
                }
                for s in self.stages()
            ],
            "drill_sinks": list(self.drill_sinks),
            "sinks_not_for_drills": list(self.skipped_sinks),
            "samples": [s.as_dict() for s in self.samples],
        }

    def render(self) -> str:
        """A table for a terminal."""
        lines = [
            f"drill {self.started_at:%Y-%m-%d %H:%M:%S}Z: {len(self.samples)} presses, "
            f"SLO {self.slo_s:g} s — {'PASS' if self.passed else 'FAIL'}",
            f"{'stage':<28}{'n':>4}{'miss':>6}{'p50 s':>9}{'p99 s':>9}{'max s':>9}  result",
        ]

        def fmt(value: float | None) -> str:
            return f"{value:9.3f}" if value is not None else f"{'-':>9}"

        for s in self.stages():
            verdict = "ok" if s.passed(self.slo_s) else "FAIL"
            lines.append(
                f"{'publish → ' + s.stage:<28}{s.count:>4}{s.missing:>6}"
                f"{fmt(s.p50_s)}{fmt(s.p99_s)}{fmt(s.max_s)}  {verdict}"
            )
        if self.skipped_sinks:
            lines.append(
                f"not configured for drills (got nothing): {', '.join(self.skipped_sinks)}"
            )
        return "\n".join(lines)


class _Publisher:
    """One MQTT connection that publishes drill presses (event topic only)."""

    def __init__(self, settings: MqttHubSettings) -> None:
        self.settings = settings
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"gridwatch-drill-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, password)

    def connect(self) -> None:
        self._client.connect(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()

    def press(self, mqtt_id: str, msg_id: str) -> None:
        body = {
            "v": 1,
            "msg_id": msg_id,
            "type": "panic.press",
            "time": datetime.now(UTC).isoformat(),
            "drill": True,
            "detail": "GridWatch drill",
        }
        info = self._client.publish(
            f"{self.settings.topic_prefix}/{mqtt_id}/event", json.dumps(body).encode(), qos=1
        )
        info.wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class DrillRunner:
    """Runs drills against the hub it belongs to."""

    def __init__(
        self,
        *,
        store: SqlStore,
        mqtt: MqttHubSettings,
        events: EventBus[DeviceEvent],
        alarm_changes: EventBus[AlarmChange],
        alarms: AlarmEngine,
        sinks: Sequence[tuple[str, bool]],
    ) -> None:
        self.store = store
        self.mqtt = mqtt
        self.events = events
        self.alarm_changes = alarm_changes
        self.alarms = alarms
        #: (sink name, delivers drills) of every configured sink.
        self.sinks = list(sinks)
        self._lock = asyncio.Lock()

    async def _buttons(self, wanted: Sequence[str]) -> list[tuple[str, str]]:
        rows = await load_mqtt_devices(self.store)
        buttons = [
            (row.mqtt_device_id, row.device_id)
            for row in rows
            if row.kind == "alarm_point" and row.mqtt_device_id
        ]
        if wanted:
            buttons = [b for b in buttons if b[0] in wanted or b[1] in wanted]
        if not buttons:
            raise DrillError("no registered panic button (alarm point with an MQTT id) to drill")
        return buttons

    async def run(
        self,
        presses: int = 10,
        *,
        devices: Sequence[str] = (),
        slo_s: float = 2.0,
        interval_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> DrillReport:
        """Press `presses` times (round robin over the buttons) and time each stage."""
        if not self.mqtt.enabled:
            raise DrillError("MQTT is disabled on this hub (mqtt.enabled: false)")
        if presses < 1:
            raise DrillError("a drill needs at least one press")
        async with self._lock:
            buttons = await self._buttons(devices)
            publisher = _Publisher(self.mqtt)
            try:
                await asyncio.to_thread(publisher.connect)
            except OSError as exc:
                raise DrillError(f"cannot reach the MQTT broker: {exc}") from exc
            started = datetime.now(UTC)
            samples: list[DrillSample] = []
            try:
                for index in range(presses):
                    mqtt_id, device_id = buttons[index % len(buttons)]
                    samples.append(
                        await self._one(publisher, mqtt_id, device_id, timeout_s=timeout_s)
                    )
                    await asyncio.sleep(interval_s)
            finally:
                await asyncio.to_thread(publisher.close)
        return DrillReport(
            started,
            slo_s,
            tuple(samples),
            tuple(name for name, drill in self.sinks if drill),
            tuple(name for name, drill in self.sinks if not drill),
        )

    async def _one(
        self, publisher: _Publisher, mqtt_id: str, device_id: str, *, timeout_s: float
    ) -> DrillSample:
        msg_id = f"drill-{uuid.uuid4().hex}"
        events = self.events.subscribe(maxsize=100_000, name="drill-events")
        changes = self.alarm_changes.subscribe(maxsize=100_000, name="drill-alarms")
        sample = DrillSample(mqtt_id, device_id, msg_id, datetime.now(UTC))
        try:
            t0 = time.perf_counter()
            sample.published_at = datetime.now(UTC)
            await asyncio.to_thread(publisher.press, mqtt_id, msg_id)

            async def committed() -> None:
                async for event in events:
                    if event.payload.get("msg_id") == msg_id:
                        sample.committed_s = time.perf_counter() - t0
                        return

            async def streamed() -> None:
                async for change in changes:
                    alarm = change.payload.get("alarm", {})
                    if (
                        alarm.get("is_drill")
                        and alarm.get("device_id") == device_id
                        and change.payload.get("event") == "alarm.open"
                    ):
                        sample.alarm_stream_s = time.perf_counter() - t0
                        sample.alarm_id = str(change.alarm_id)
                        return

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(committed(), streamed()), timeout_s)
        finally:
            events.close()
            changes.close()
        if sample.alarm_id is not None:
            await self._deliveries(sample, t0, timeout_s)
            await self._close(sample.alarm_id)
        return sample

    async def _deliveries(self, sample: DrillSample, t0: float, timeout_s: float) -> None:
        assert sample.alarm_id is not None  # noqa: S101 - checked by the caller
        alarm_id = uuid.UUID(sample.alarm_id)
        wanted = {name for name, drill in self.sinks if drill}
        deadline = time.perf_counter() + timeout_s
        sample.sinks_s = dict.fromkeys(sorted(wanted))
        while True:
            for row in await deliveries(self.alarms.store, alarm_id):
                first = sample.sinks_s.get(row.sink) is None
                if row.sink in wanted and row.delivered_at is not None and first:
                    # Receipt time is the hub's clock, as is the publish time.
                    delay = (row.delivered_at - sample.published_at).total_seconds()
                    sample.sinks_s[row.sink] = round(max(0.0, delay), 4)
            if all(v is not None for v in sample.sinks_s.values()):
                return
            if time.perf_counter() > deadline:
                return
            await asyncio.sleep(0.02)

    async def _close(self, alarm_id: str) -> None:
        """Close the drill alarm so it leaves the console's open list."""
        for action in (AlarmAction.ACKNOWLEDGE, AlarmAction.RESOLVE, AlarmAction.CLOSE):
            try:
                await self.alarms.act(
                    uuid.UUID(alarm_id),
                    action,
                    _ACTOR,
                    visible=lambda _stored: True,
                    note="drill measured; closed by the drill",
                )
            except (ValueError, LookupError) as exc:
                log.info("drill alarm %s not %s: %s", alarm_id, action.value, exc)
                return
