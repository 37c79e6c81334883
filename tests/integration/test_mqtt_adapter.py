"""The MQTT adapter against the machine's Mosquitto: ack after commit, bad input, commands."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from adapters.mqtt import (
    BroadcastAction,
    BroadcastCommand,
    CommandOutcome,
    ConnectionState,
    MqttAdapter,
    MqttSettings,
    UnitStatus,
    UnknownUnitError,
    VendorMapping,
)
from adapters.sim import BroadcastUnitSim, PanicButtonSim
from camera_registry.events import Severity
from camera_registry.models import DeviceKind
from tests.integration.mqtt_support import (
    FakeWriter,
    Publisher,
    Registry,
    drop_session,
    settings_for,
    unique_prefix,
)
from tests.peers.mosquitto import mosquitto_peer

pytestmark = pytest.mark.mqtt

BUTTON = "school-07-btn-1"
SPEAKER = "school-07-spk-1"


def run(settings: MqttSettings, writer: FakeWriter, registry: Registry) -> MqttAdapter:
    return MqttAdapter(settings, submit=writer.submit, device_lookup=registry.lookup)


@pytest.fixture
def registry() -> Registry:
    return Registry().add(BUTTON, DeviceKind.ALARM_POINT).add(SPEAKER, DeviceKind.BROADCAST_UNIT)


@pytest.fixture
def client_id(broker: tuple[str, int]) -> Iterator[str]:
    name = f"gw-test-{uuid.uuid4().hex[:12]}"
    yield name
    drop_session(*broker, name)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_press_is_acknowledged_only_after_commit(
    broker: tuple[str, int],
    registry: Registry,
    client_id: str,
    protocol: Literal["5", "3.1.1"],
) -> None:
    prefix = unique_prefix()
    settings = settings_for(*broker, prefix, client_id=client_id, protocol=protocol)

    # 1. The writer never commits; the adapter goes away (as in a crash before commit).
    holding = FakeWriter(hold=True)
    async with run(settings, holding, registry) as hub:
        assert await hub.wait_connected(5)
        with PanicButtonSim(BUTTON, host=broker[0], port=broker[1], prefix=prefix) as button:
            msg_id = button.press()
            await holding.wait_for(lambda: bool(holding.events("panic.press")))
        assert hub.metrics.acked == 0
    press = holding.events("panic.press")[0]
    assert press.severity is Severity.CRITICAL
    assert press.dedup_key == f"mqtt:{BUTTON}:{msg_id}"

    # 2. Without a PUBACK the broker still holds the press and redelivers it to the session.
    committing = FakeWriter()
    async with MqttAdapter(
        settings, submit=committing.submit, device_lookup=registry.lookup
    ) as hub:
        await committing.wait_for(lambda: bool(committing.events("panic.press")))
        assert committing.events("panic.press")[0].dedup_key == press.dedup_key
        await committing.wait_for(lambda: hub.metrics.acked >= 1)
        await asyncio.sleep(0.2)  # let the PUBACK leave before DISCONNECT

    # 3. Once committed (and PUBACKed), the press is not delivered again.
    after = FakeWriter()
    async with run(settings, after, registry) as hub:
        assert await hub.wait_connected(5)
        assert hub.state.session_present
        await asyncio.sleep(1.0)
    assert after.events("panic.press") == []


async def test_bad_input_is_kept_as_rejected_and_acknowledged(
    broker: tuple[str, int], registry: Registry, client_id: str
) -> None:
    prefix = unique_prefix()
    settings = settings_for(*broker, prefix, client_id=client_id)
    poison: list[tuple[str, bytes, str]] = [
        (f"{prefix}/{BUTTON}/event", b"{not json", "malformed_json"),
        (f"{prefix}/{BUTTON}/event", b'{"v":1,"msg_id":5,"type":"panic.press"}', "invalid_payload"),
        (
            f"{prefix}/{BUTTON}/event",
            b'{"v":9,"msg_id":"a","type":"panic.press"}',
            "unsupported_version",
        ),
        (
            f"{prefix}/nobody-1/event",
            b'{"v":1,"msg_id":"a","type":"panic.press"}',
            "unknown_device",
        ),
        (f"{prefix}/{BUTTON}/event", b"{" + b" " * 70_000 + b"}", "oversize"),
        (
            f"{prefix}/bad$id/event",
            b'{"v":1,"msg_id":"a","type":"panic.press"}',
            "topic_outside_scheme",
        ),
    ]
    writer = FakeWriter()
    publisher = Publisher(*broker)
    try:
        async with MqttAdapter(
            settings, submit=writer.submit, device_lookup=registry.lookup
        ) as hub:
            assert await hub.wait_connected(5)
            for topic, body, _ in poison:
                await asyncio.to_thread(publisher.send, topic, body)
            # A good press after the poison still gets through: nothing blocks the session.
            await asyncio.to_thread(
                publisher.send,
                f"{prefix}/{BUTTON}/event",
                {"v": 1, "msg_id": "after-poison", "type": "panic.press"},
            )
            await writer.wait_for(lambda: hub.metrics.acked == len(poison) + 1)
            await asyncio.sleep(0.2)
        reasons = [r.reason.split(":")[0] for r in writer.rejections()]
        assert reasons == [expected for _, _, expected in poison]
        assert dict(hub.metrics.rejected) == {reason: 1 for reason in reasons}
        assert [r.origin for r in writer.rejections()] == [topic for topic, _, _ in poison]
        assert writer.rejections()[3].device_id == "nobody-1"
        assert [e.payload["msg_id"] for e in writer.events("panic.press")] == ["after-poison"]

        again = FakeWriter()
        async with run(settings, again, registry) as hub:
            assert await hub.wait_connected(5)
            await asyncio.sleep(1.0)
        assert again.items == [], "acknowledged poison must not be redelivered"
    finally:
        publisher.close()


async def test_retained_press_is_ignored_and_never_opens_an_alarm(
    broker: tuple[str, int], registry: Registry, client_id: str
) -> None:
    prefix = unique_prefix()
    topic = f"{prefix}/{BUTTON}/event"
    publisher = Publisher(*broker)
    writer = FakeWriter()
    try:
        # A button (wrongly) publishes its press retained; the hub subscribes later.
        await asyncio.to_thread(
            publisher.send, topic, {"v": 1, "msg_id": "r1", "type": "panic.press"}, retain=True
        )
        settings = settings_for(*broker, prefix, client_id=client_id)
        async with MqttAdapter(
            settings, submit=writer.submit, device_lookup=registry.lookup
        ) as hub:
            await writer.wait_for(lambda: bool(writer.rejections()))
            await writer.wait_for(lambda: hub.metrics.acked == 1)
        assert writer.events("panic.press") == []
        assert writer.rejections()[0].reason.startswith("retained_ignored")
        assert hub.metrics.rejected["retained_ignored"] == 1
    finally:
        await asyncio.to_thread(publisher.send, topic, b"", retain=True)  # clear it
        publisher.close()


async def test_last_will_marks_the_unit_offline(
    broker: tuple[str, int], registry: Registry, client_id: str
) -> None:
    prefix = unique_prefix()
    writer = FakeWriter()
    settings = settings_for(*broker, prefix, client_id=client_id)
    async with run(settings, writer, registry) as hub:
        assert await hub.wait_connected(5)
        unit = BroadcastUnitSim(SPEAKER, host=broker[0], port=broker[1], prefix=prefix)
        unit.start()
        await writer.wait_for(lambda: bool(writer.events("device.online")))
        assert hub.unit_status(SPEAKER) is UnitStatus.ONLINE
        unit.crash()
        await writer.wait_for(lambda: bool(writer.events("device.offline")))
        assert hub.unit_status(SPEAKER) is UnitStatus.OFFLINE
        offline = writer.events("device.offline")[0]
        assert offline.payload["reason"] == "availability"
    Publisher(*broker).send(f"{prefix}/{SPEAKER}/availability", b"", retain=True)


@pytest.mark.parametrize(
    ("behaviour", "outcome", "attempts"),
    [
        ("ack", CommandOutcome.ACKED, 1),
        ("fail", CommandOutcome.FAILED, 1),
        ("ignore", CommandOutcome.TIMED_OUT, 2),
        ("ignore_first", CommandOutcome.ACKED, 2),
    ],
)
async def test_broadcast_command_outcomes(
    broker: tuple[str, int],
    registry: Registry,
    client_id: str,
    behaviour: Literal["ack", "fail", "ignore", "ignore_first"],
    outcome: CommandOutcome,
    attempts: int,
) -> None:
    prefix = unique_prefix()
    writer = FakeWriter()
    settings = settings_for(*broker, prefix, client_id=client_id)
    command = BroadcastCommand(action=BroadcastAction.TTS, text="请师生立即疏散", priority=1)
    async with run(settings, writer, registry) as hub:
        assert await hub.wait_connected(5)
        with BroadcastUnitSim(
            SPEAKER,
            host=broker[0],
            port=broker[1],
            prefix=prefix,
            behaviour=behaviour,
            play_seconds=0.5,
        ) as unit:
            # Generous per attempt: one slow round trip on a loaded machine is no retry.
            result = await hub.send_command(SPEAKER, command, timeout=3.0, retries=1)
            assert (result.outcome, result.attempts) == (outcome, attempts)
            assert result.unit_id == SPEAKER
            assert {c.correlation_id for c in unit.commands} == {result.correlation_id}
            assert unit.commands[0].command["text"] == "请师生立即疏散"
            if behaviour == "fail":
                assert result.reason == "amplifier fault"
                await writer.wait_for(lambda: bool(writer.events("broadcast.command_ack")))
            if outcome is CommandOutcome.ACKED:
                # Busy while playing (0.5 s), idle after: both reported, in that order.
                await writer.wait_for(lambda: len(writer.events("broadcast.status")) >= 2)
                await writer.wait_for(lambda: hub.unit_status(SPEAKER) is UnitStatus.IDLE)
                statuses = [e.payload["status"] for e in writer.events("broadcast.status")]
                assert statuses == ["busy", "idle"]
        assert hub.metrics.commands[outcome.value] == 1
    Publisher(*broker).send(f"{prefix}/{SPEAKER}/availability", b"", retain=True)


async def test_commands_only_go_to_registered_broadcast_units(
    broker: tuple[str, int], registry: Registry, client_id: str
) -> None:
    settings = settings_for(*broker, unique_prefix(), client_id=client_id)
    writer = FakeWriter()
    async with run(settings, writer, registry) as hub:
        with pytest.raises(UnknownUnitError):
            await hub.send_command(BUTTON, BroadcastCommand(action=BroadcastAction.STOP))
        with pytest.raises(UnknownUnitError):
            await hub.send_command("spk-unknown", BroadcastCommand(action=BroadcastAction.STOP))


async def test_vendor_topic_and_fields_feed_the_same_press(
    broker: tuple[str, int], registry: Registry, client_id: str
) -> None:
    prefix = unique_prefix()
    vendor_root = prefix.split("/")[0] + "-acme"
    mapping = VendorMapping(
        name="acme",
        topic=f"{vendor_root}/+/{{device_id}}/sos",
        event_type_pointer="/evt/code",
        kinds={"1": "panic.press"},
        msg_id_pointer="/seq",
        time_pointer="/ts",
        time_format="epoch_s",
    )
    writer = FakeWriter()
    settings = settings_for(*broker, prefix, client_id=client_id, vendor_mappings=[mapping])
    publisher = Publisher(*broker)
    try:
        async with MqttAdapter(
            settings, submit=writer.submit, device_lookup=registry.lookup
        ) as hub:
            assert await hub.wait_connected(5)
            body = {"evt": {"code": 1}, "seq": 77, "ts": 1_772_353_800}
            await asyncio.to_thread(publisher.send, f"{vendor_root}/site9/{BUTTON}/sos", body)
            await writer.wait_for(lambda: bool(writer.events("panic.press")))
        press = writer.events("panic.press")[0]
        assert (press.device_id, press.dedup_key) == (BUTTON, f"mqtt:acme:{BUTTON}:77")
    finally:
        publisher.close()


async def test_a_refused_connection_is_reported_as_refused(tmp_path: Path) -> None:
    registry = Registry()
    writer = FakeWriter()
    with mosquitto_peer(tmp_path, extra_conf="allow_anonymous false") as peer:
        settings = settings_for(peer.host, peer.port, unique_prefix(), username="intruder")
        async with MqttAdapter(
            settings, submit=writer.submit, device_lookup=registry.lookup
        ) as hub:
            assert not await hub.wait_connected(2)
            assert hub.state.state in (ConnectionState.REFUSED, ConnectionState.CONNECTING)
            await writer.wait_for(lambda: hub.metrics.refusals >= 1)
            assert hub.metrics.connects == 0
            assert hub.state.reason is not None
            assert "authori" in hub.state.reason.lower()
