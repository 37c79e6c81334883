"""Random payloads through the real broker: nothing crashes, every message is accounted for."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mqtt import MqttAdapter
from camera_registry.events import DeviceEvent, RejectedMessage
from camera_registry.models import DeviceKind
from tests.integration.mqtt_support import (
    FakeWriter,
    Publisher,
    Registry,
    drop_session,
    machine_broker,
    settings_for,
    unique_prefix,
)

pytestmark = pytest.mark.mqtt

DEVICES = ["fuzz-btn", "fuzz-spk", "fuzz-nobody"]

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_near_valid = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 2, "1", True, None])},
    optional={
        "msg_id": st.text(max_size=70) | st.integers(),
        "type": st.sampled_from(
            [
                "panic.press",
                "panic.restore",
                "panic.tamper",
                "device.low_battery",
                "broadcast.status",
                "panic.explode",
                "",
            ]
        ),
        "status": st.sampled_from(["idle", "busy", "fault", "on fire"]),
        "state": st.sampled_from(["online", "offline", "maybe"]),
        "interval_s": st.integers(-5, 100_000),
        "battery": st.integers(-10, 120),
        "correlation_id": st.text(max_size=10),
        "result": st.sampled_from(["ok", "failed", "meh"]),
        "time": st.sampled_from(["2026-03-01T08:00:00+08:00", "2026-03-01T08:00:00", "noon"]),
    },
)
_payloads = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda value: json.dumps(value).encode()),
    _near_valid.map(lambda value: json.dumps(value).encode()),
)


class _AdapterThread:
    """The adapter on its own event loop thread, so hypothesis can drive it synchronously."""

    def __init__(self, host: str, port: int, prefix: str, client_id: str) -> None:
        registry = Registry().add("fuzz-btn", DeviceKind.ALARM_POINT)
        registry.add("fuzz-spk", DeviceKind.BROADCAST_UNIT)
        self.writer = FakeWriter()
        self.adapter = MqttAdapter(
            settings_for(host, port, prefix, client_id=client_id),
            submit=self.writer.submit,
            device_lookup=registry.lookup,
        )
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.adapter:
            await self.adapter.wait_connected(10)
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(15), "adapter did not connect"

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def wait_items(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.writer.changed:
            while len(self.writer.items) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"only {len(self.writer.items)} of {count} messages came out"
                self.writer.changed.wait(remaining)


@contextmanager
def _running_adapter() -> Iterator[tuple[_AdapterThread, Publisher, str]]:
    host, port = machine_broker()
    prefix = unique_prefix()
    client_id = f"gw-fuzz-{prefix[7:17]}"
    harness = _AdapterThread(host, port, prefix, client_id)
    harness.start()
    publisher = Publisher(host, port)
    try:
        yield harness, publisher, prefix
    finally:
        publisher.close()
        harness.stop()
        drop_session(host, port, client_id)


def test_random_payloads_end_as_events_or_rejections() -> None:
    with _running_adapter() as (harness, publisher, prefix):
        sent: list[str] = []

        @settings(
            max_examples=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            derandomize=False,
        )
        @given(
            device=st.sampled_from(DEVICES),
            suffix=st.sampled_from(["event", "heartbeat", "availability", "cmd/ack"]),
            payload=_payloads,
        )
        def feed(device: str, suffix: str, payload: bytes) -> None:
            topic = f"{prefix}/{device}/{suffix}"
            publisher.send(topic, payload)
            sent.append(topic)
            harness.wait_items(len(sent))
            item = harness.writer.items[len(sent) - 1]
            if isinstance(item, DeviceEvent):
                assert item.device_id == device
            else:
                assert isinstance(item, RejectedMessage)
                assert item.origin == topic
                assert item.reason

        feed()
        deadline = time.monotonic() + 5
        while harness.adapter.metrics.acked < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = harness.adapter.metrics
        assert metrics.received == len(sent) == len(harness.writer.items)
        assert metrics.acked == len(sent)
        assert metrics.events + sum(metrics.rejected.values()) == len(sent)
        assert metrics.rejected["decode_error"] == 0
