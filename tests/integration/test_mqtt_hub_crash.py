"""A hub killed with SIGKILL during a burst of panic presses loses none and stores none twice.

The hub is a child process running `gridwatch run` with MQTT enabled against an own
Mosquitto that runs the shipped configuration (persistence, queue limits). While a
publisher sends 10,000 QoS 1 presses, each with its own msg_id, the hub is killed; the
publisher goes on while the hub is away (the broker queues for the hub's session); the
hub is restarted. Every press the broker acknowledged to the publisher must then be in
the store exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.storage import SqlStore, open_store
from tests.integration.hub_mqtt_support import register_device, storage_url
from tests.peers import free_port
from tests.peers.mosquitto import MosquittoPeer, mosquitto_peer

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

PRESSES = 10_000
KILL_AFTER = 2_000
BUTTON = "school-21-btn-1"
PREFIX = "gridwatch/v1"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _hub_env(
    peer: MosquittoPeer, data_dir: Path, url: str | None, http_port: int
) -> dict[str, str]:
    env = {
        **os.environ,
        "GRIDWATCH_DATA_DIR": str(data_dir),
        "GRIDWATCH_HTTP__PORT": str(http_port),
        "GRIDWATCH_MQTT__ENABLED": "true",
        "GRIDWATCH_MQTT__HOST": peer.host,
        "GRIDWATCH_MQTT__PORT": str(peer.port),
        "GRIDWATCH_MQTT__CLIENT_ID": "gridwatch-hub",
        "GRIDWATCH_MQTT__RECONNECT_MIN_S": "0.1",
        "GRIDWATCH_MQTT__RECONNECT_MAX_S": "1.0",
    }
    env.pop("GRIDWATCH_STORAGE__URL", None)
    if url is not None:
        env["GRIDWATCH_STORAGE__URL"] = url
    return env


@contextmanager
def _hub_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run"], env=env, stdout=log, stderr=log
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _wait_mqtt_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).json()
            if ready.get("mqtt", {}).get("connected"):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("hub did not connect to MQTT: " + log_path.read_text()[-3000:])


class _Burst:
    """Publishes the presses from a thread; remembers which ones the broker acknowledged."""

    def __init__(self, peer: MosquittoPeer) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"burst-{uuid.uuid4().hex[:8]}",
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect(peer.host, peer.port)
        self.client.loop_start()
        self.sent = 0
        self.accepted: set[str] = set()
        self.halfway = threading.Event()
        self.thread = threading.Thread(target=self._run, name="press-burst", daemon=True)

    def _run(self) -> None:
        topic = f"{PREFIX}/{BUTTON}/event"
        infos = []
        for i in range(PRESSES):
            body = json.dumps({"v": 1, "msg_id": f"p{i:05d}", "type": "panic.press"}).encode()
            infos.append((f"p{i:05d}", self.client.publish(topic, body, qos=1)))
            self.sent = i + 1
            if self.sent == KILL_AFTER:
                self.halfway.set()
            if i % 50 == 0:
                time.sleep(0.005)  # a burst over a few seconds, so the kill lands inside it
        for msg_id, info in infos:
            info.wait_for_publish(60)
            if info.is_published():
                self.accepted.add(msg_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _stored_keys(store: SqlStore) -> list[str]:
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT dedup_key FROM events WHERE device_id = %s AND kind = 'panic.press'",
            (BUTTON,),
        )
    return [str(row[0]) for row in rows]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigkill_during_burst_loses_no_accepted_press(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = storage_url(backend, request)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = open_store(url or f"sqlite:///{data_dir / 'gridwatch.sqlite3'}", pool_size=2)
    await store.open()  # migrates, as the hub would
    await register_device(store, BUTTON, "alarm_point")

    with mosquitto_peer(tmp_path) as peer:
        conf = peer.conf_path.read_text()
        # The shipped queue limit is what keeps the burst for the killed hub's session;
        # Mosquitto's default (1000) would drop most of the 8,000 presses sent meanwhile.
        limits = [line for line in conf.splitlines() if line.startswith("max_queued_messages ")]
        assert limits and int(limits[0].split()[1]) >= PRESSES, conf

        port = free_port()
        env = _hub_env(peer, data_dir, url, port)
        log_path = tmp_path / "hub.log"
        with _hub_process(env, log_path) as first:
            await asyncio.to_thread(_wait_mqtt_ready, first, port, log_path)
            burst = _Burst(peer)
            burst.thread.start()
            assert await asyncio.to_thread(burst.halfway.wait, 60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        stored_at_kill = len(await _stored_keys(store))
        await asyncio.to_thread(burst.thread.join, 120)
        burst.close()
        assert burst.sent == PRESSES
        assert len(burst.accepted) == PRESSES  # the broker took every press

        with _hub_process(env, log_path) as second:
            await asyncio.to_thread(_wait_mqtt_ready, second, port, log_path)
            deadline = time.monotonic() + 180
            keys = await _stored_keys(store)
            while len(set(keys)) < len(burst.accepted) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                keys = await _stored_keys(store)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
    await store.close()

    assert stored_at_kill < PRESSES  # the kill really landed inside the burst
    expected = {f"mqtt:{BUTTON}:{msg_id}" for msg_id in burst.accepted}
    assert len(keys) == len(set(keys)), "a press was stored twice"
    assert set(keys) == expected, f"{len(expected - set(keys))} accepted presses are missing"
