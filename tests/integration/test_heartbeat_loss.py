"""Offline detection on the default heartbeat settings, through the real broker.

The defaults (heartbeat every 20 s, 3 missed intervals plus half an interval of
grace) declare a silent device offline within 90 s. The broker test runs the same
ratios 20 times faster (heartbeats every 1 s): at 1 % random heartbeat loss, and
with the worst case that loss rate makes likely (two heartbeats lost in a row),
no device is declared offline; a device that really goes silent is.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.mqtt.models import DEFAULT_HEARTBEAT_INTERVAL_S, HeartbeatPayload
from camera_registry.health import silence_limit_s
from hub.config import MqttHubSettings
from hub.mqtt.health import CHECK_S as LIVENESS_CHECK_S
from hub.runtime import Hub
from tests.integration.hub_mqtt_support import (
    hub_with_mqtt,
    mqtt_hub_settings,
    register_device,
    wait_until,
)
from tests.integration.mqtt_support import unique_prefix

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

DEVICES = [f"school-{n:02d}-btn-1" for n in range(20)]
SILENT = DEVICES[-1]
ROUNDS = 30
LOSS = 0.01


def test_defaults_declare_a_silent_device_offline_within_90_seconds() -> None:
    settings = MqttHubSettings()
    assert HeartbeatPayload(v=1).interval_s == DEFAULT_HEARTBEAT_INTERVAL_S == 20
    limit = silence_limit_s(
        DEFAULT_HEARTBEAT_INTERVAL_S,
        settings.heartbeat_missed_intervals,
        settings.heartbeat_grace_intervals,
    )
    # Declared at the first check after the limit: at most one check period later.
    assert limit + LIVENESS_CHECK_S <= 90
    # Offline only once three heartbeats in a row are missing (1 % loss: one in a million).
    assert limit > 3 * DEFAULT_HEARTBEAT_INTERVAL_S


class _Heartbeats:
    """One client sending every device's heartbeat once a second, dropping some."""

    def __init__(self, host: str, port: int, prefix: str, seed: int) -> None:
        self.prefix = prefix
        self.random = random.Random(seed)
        self.sent = 0
        self.dropped = 0
        self.stop = threading.Event()
        self.silenced: set[str] = set()
        self._lock = threading.Lock()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"hb-loss-{uuid.uuid4().hex[:8]}",
        )
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        # The worst case 1 % loss makes likely: two heartbeats lost in a row, for 3 devices.
        self.double_drops = {DEVICES[i]: 5 + 7 * i for i in range(3)}

    def _drop(self, device_id: str, round_no: int) -> bool:
        start = self.double_drops.get(device_id)
        if start is not None and round_no in (start, start + 1):
            return True
        return self.random.random() < LOSS

    def run(self) -> None:
        began = time.monotonic()
        for round_no in range(ROUNDS):
            for device_id in DEVICES:
                with self._lock:
                    if device_id in self.silenced:
                        continue
                if round_no > 0 and self._drop(device_id, round_no):
                    self.dropped += 1
                    continue
                body = {"v": 1, "interval_s": 1}
                self._client.publish(
                    f"{self.prefix}/{device_id}/heartbeat", json.dumps(body).encode(), qos=1
                )
                self.sent += 1
            if self.stop.wait(max(0.0, began + round_no + 1 - time.monotonic())):
                return

    def silence(self, device_id: str) -> None:
        with self._lock:
            self.silenced.add(device_id)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


async def test_one_percent_heartbeat_loss_declares_nobody_offline(
    broker: tuple[str, int], client_id: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    mqtt = mqtt_hub_settings(*broker, prefix, client_id)  # missed intervals and grace: defaults
    async with hub_with_mqtt(tmp_path, None, mqtt) as (hub, _):
        for device_id in DEVICES:
            await register_device(hub.store, device_id, "alarm_point")
        adapter = hub.mqtt.adapter
        assert adapter is not None and await adapter.wait_connected(5)
        await wait_until(lambda: len(hub.mqtt.directory) == len(DEVICES), what="registry")

        sender = _Heartbeats(*broker, prefix, seed=20261206)
        thread = threading.Thread(target=sender.run, daemon=True)
        thread.start()
        try:
            await wait_until(lambda: _all_online(hub), timeout=30, what="every device online")
            sender.silence(SILENT)  # this one really goes silent
            await wait_until(lambda: not thread.is_alive(), timeout=ROUNDS + 30, what="rounds")
            await wait_until(lambda: _offline_events(hub, SILENT), timeout=30, what="silent")
        finally:
            sender.stop.set()
            thread.join(10)
            sender.close()
        await hub.writer.flush()

        assert sender.dropped >= 6  # the double drops at least, and the random ones
        offline = await hub.store.events(kind="device.offline", limit=100)
        assert [e.device_id for e in offline] == [SILENT]
        [event] = offline
        silent_for = event.time - _parse(event.payload["last_heard"])
        # Not before its three intervals and the grace; the upper bound is the check period.
        assert silent_for >= timedelta(seconds=silence_limit_s(1, 3, 0.5))
        print(
            f"heartbeats sent {sender.sent}, dropped {sender.dropped} "
            f"({sender.dropped / (sender.sent + sender.dropped):.1%}); false offline 0; "
            f"silent device declared offline {silent_for.total_seconds():.2f} s after last "
            f"heard (x20 = {silent_for.total_seconds() * 20:.0f} s on the defaults)"
        )
        async with hub.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT device_id FROM device_health_history WHERE to_state = 'offline'"
            )
        assert [r[0] for r in rows] == [SILENT]


async def _all_online(hub: Hub) -> bool:
    async with hub.store.reading() as tx:
        rows = await tx.fetchall("SELECT COUNT(*) FROM device_state WHERE health = 'online'")
    return int(rows[0][0]) == len(DEVICES)


async def _offline_events(hub: Hub, device_id: str) -> bool:
    return bool(await hub.store.count_events(device_id=device_id, kind="device.offline"))


def _parse(text: object) -> datetime:
    return datetime.fromisoformat(str(text))
