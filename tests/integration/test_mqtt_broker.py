"""The shipped broker configuration against bursts and restarts (own Mosquitto instances)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from adapters.mqtt import MqttAdapter
from adapters.sim import PanicButtonSim
from camera_registry.models import DeviceKind
from tests.integration.mqtt_support import FakeWriter, Publisher, Registry, settings_for
from tests.peers.mosquitto import MosquittoPeer, mosquitto_peer

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

BUTTON = "school-12-btn-2"
BURST = 3000


async def _presses_kept_for_offline_hub(peer: MosquittoPeer) -> int:
    """Burst of presses while the hub's session is offline; how many reach it afterwards."""
    registry = Registry().add(BUTTON, DeviceKind.ALARM_POINT)
    prefix = "gridwatch/v1"
    settings = settings_for(peer.host, peer.port, prefix, client_id="gridwatch-hub")
    first = FakeWriter()
    async with MqttAdapter(settings, submit=first.submit, device_lookup=registry.lookup) as hub:
        assert await hub.wait_connected(5)  # creates the persistent session
    publisher = Publisher(peer.host, peer.port)
    topic = f"{prefix}/{BUTTON}/event"

    def burst() -> None:
        infos = [
            publisher.send_nowait(
                topic, json.dumps({"v": 1, "msg_id": f"p{i}", "type": "panic.press"}).encode()
            )
            for i in range(BURST)
        ]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    await asyncio.to_thread(burst)
    publisher.close()
    writer = FakeWriter()
    async with MqttAdapter(settings, submit=writer.submit, device_lookup=registry.lookup) as hub:
        assert await hub.wait_connected(5)
        quiet_since, seen = time.monotonic(), -1
        while len(writer.stored) < BURST and time.monotonic() - quiet_since < 5.0:
            if len(writer.stored) != seen:
                quiet_since, seen = time.monotonic(), len(writer.stored)
            await asyncio.sleep(0.05)
    return len(writer.stored)


async def test_shipped_queue_limits_keep_a_burst_for_an_offline_hub(tmp_path: Path) -> None:
    with mosquitto_peer(tmp_path) as peer:
        assert await _presses_kept_for_offline_hub(peer) == BURST


async def test_default_queue_limits_would_lose_presses(tmp_path: Path) -> None:
    # Why docker/mosquitto.conf sets max_queued_messages: with Mosquitto's default (1000)
    # the broker accepts every press (PUBACK to the button) and then drops most of them.
    with mosquitto_peer(tmp_path, shipped_limits=False) as peer:
        kept = await _presses_kept_for_offline_hub(peer)
    assert kept < BURST
    assert kept <= 1100


async def test_broker_restart_mid_stream_loses_no_acknowledged_press(tmp_path: Path) -> None:
    registry = Registry().add(BUTTON, DeviceKind.ALARM_POINT)
    prefix = "gridwatch/v1"
    with mosquitto_peer(tmp_path) as peer:
        settings = settings_for(peer.host, peer.port, prefix, client_id="gridwatch-hub")
        writer = FakeWriter()
        async with MqttAdapter(
            settings, submit=writer.submit, device_lookup=registry.lookup
        ) as hub:
            assert await hub.wait_connected(5)
            button = PanicButtonSim(BUTTON, host=peer.host, port=peer.port, prefix=prefix)
            button.start()
            sent: list[str] = []
            for i in range(400):
                sent.append(button.press())
                if i == 200:
                    await asyncio.to_thread(peer.stop)  # SIGTERM: the broker saves its store
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(peer.start)
                await asyncio.sleep(0.002)
            # The button's paho client resends what the broker had not acknowledged.
            await writer.wait_for(
                lambda: {e.payload["msg_id"] for e in writer.events("panic.press")} >= set(sent),
                timeout=30,
            )
            assert hub.metrics.disconnects >= 1
            assert hub.state.session_present
            button.stop()
        stored = [e.payload["msg_id"] for e in writer.stored.values() if e.kind == "panic.press"]
        assert sorted(stored) == sorted(sent)  # every press stored exactly once
