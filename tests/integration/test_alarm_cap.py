"""CAP 1.2 delivery end to end: a panic alarm's lifecycle as Alert, Updates and Cancel,
posted to an HTTP receiver that parses each message and checks it field by field."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters.sinks.cap import CAP_NS, validate_alert
from alarms.rules import DEFAULT_RULES
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.storage import SqlStore
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import add_device
from tests.integration.outbox_receiver import KeyedReceiver, serve_receiver
from tests.peers import free_port

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SENDER = "gridwatch.district-center@example.gov.cn"
LATITUDE, LONGITUDE = 40.842751, 111.749180
PANIC_SOP = next(rule.sop for rule in DEFAULT_RULES.rules if rule.name == "panic_press")
PANIC_SOP_ZH = next(
    rule.sop_i18n["zh-CN"] for rule in DEFAULT_RULES.rules if rule.name == "panic_press"
)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def cap(element: ET.Element, path: str) -> str:
    """Text of a CAP child element (namespace-qualified path with '/')."""
    qualified = "/".join(f"{{{CAP_NS}}}{part}" for part in path.split("/"))
    found = element.find(qualified)
    assert found is not None, f"<{path}> missing"
    return found.text or ""


def parameters(info: ET.Element, name: str) -> dict[str, str]:
    return {
        cap(pair, "valueName"): cap(pair, "value") for pair in info.findall(f"{{{CAP_NS}}}{name}")
    }


def info_in(alert: ET.Element, language: str) -> ET.Element:
    """The <info> block of one language."""
    for info in alert.findall(f"{{{CAP_NS}}}info"):
        if cap(info, "language") == language:
            return info
    raise AssertionError(f"no <info> in {language}")


def cap_time(text: str) -> datetime:
    assert "Z" not in text and "." not in text
    return datetime.fromisoformat(text)


async def wait_delivered(engine: AlarmEngine, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            async with engine.store.reading() as tx:
                row = await tx.fetchone("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'")
            assert row is not None
            if int(row[0]) >= count:
                return
            await asyncio.sleep(0.05)


async def test_cap_receiver_gets_each_revision_as_valid_cap(store: SqlStore) -> None:
    port = free_port()
    receiver = KeyedReceiver(delay_s=0.0, signed=False)
    settings = AlarmSettings.model_validate(
        {
            "sinks": [
                {
                    "name": "police",
                    "type": "cap",
                    "url": receiver.url(port),
                    "cap_sender": SENDER,
                    "drill": True,
                    "timeout_s": 2.0,
                }
            ],
            "delivery": {"poll_interval_s": 0.05, "lease_s": 5.0, "backoff_base_s": 0.05},
        }
    )
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    engine.on_outbox(dispatcher.wake)
    for device, name in (("btn-real", "No. 1 School"), ("btn-drill", "No. 2 School")):
        await add_device(
            store, device, kind="panic", name=name, latitude=LATITUDE, longitude=LONGITUDE
        )

    async def press(device: str, drill: bool) -> uuid.UUID:
        event = make_event(
            1, device_id=device, kind="panic.press", at=engine.now(), payload={"drill": drill}
        )
        engine.after_commit(await store.ingest([event], in_transaction=engine.in_transaction))
        (found,) = await query_storage.search(
            engine.store, AlarmFilter(device_id=device), scope_paths=None, limit=1
        )
        return found.alarm.id

    async with serve_receiver(receiver, port):
        await dispatcher.start()
        try:
            real = await press("btn-real", drill=False)
            drill = await press("btn-drill", drill=True)
            steps = [
                ("acknowledge", {"note": "seen on camera"}),
                ("dispatch", {"department": "police-station-3"}),
                ("resolve", {"note": "intruder detained"}),
                ("close", {"note": "report filed"}),
            ]
            for action, extra in steps:
                await engine.act(real, action, "user:op1", visible=lambda s: True, **extra)
            await engine.act(drill, "false_alarm", "user:op1", visible=lambda s: True, note="drill")
            await wait_delivered(engine, 7)
        finally:
            await dispatcher.stop()

    assert receiver.content_types == {"application/cap+xml"}
    history = {alarm: await query_storage.history(engine.store, alarm) for alarm in (real, drill)}
    alerts: dict[tuple[uuid.UUID, int], ET.Element] = {}
    for key, body in receiver.bodies.items():
        alarm_id, revision_text, sink = key.split(":")
        assert sink == "police"
        alert = ET.fromstring(body)  # noqa: S314 - the hub's own output
        assert validate_alert(alert) == [], key
        alerts[(uuid.UUID(alarm_id), int(revision_text))] = alert
    assert sorted(rev for alarm, rev in alerts if alarm == real) == [1, 2, 3, 4, 5]
    assert sorted(rev for alarm, rev in alerts if alarm == drill) == [1, 2]

    first = alerts[(real, 1)]
    expected_types = ["Alert", "Update", "Update", "Update", "Cancel"]
    for revision, msg_type in enumerate(expected_types, start=1):
        alert = alerts[(real, revision)]
        entry = history[real][revision - 1]
        assert cap(alert, "identifier") == f"gridwatch-{real}-{revision}"
        assert cap(alert, "sender") == SENDER
        sent = cap_time(cap(alert, "sent"))
        assert sent.utcoffset() == timedelta(0) and cap(alert, "sent").endswith("-00:00")
        assert sent == entry.at.replace(microsecond=0)
        assert cap(alert, "status") == "Actual"
        assert cap(alert, "msgType") == msg_type
        assert cap(alert, "scope") == "Restricted" and cap(alert, "restriction")
        assert cap(alert, "incidents") == str(real)
        if revision > 1:
            # An update names the original alert as sender,identifier,sent.
            original = ",".join(cap(first, f) for f in ("sender", "identifier", "sent"))
            assert cap(alert, "references") == original
        else:
            assert alert.find(f"{{{CAP_NS}}}references") is None
        # One block per language, Chinese first (the default for a governance center).
        languages = [cap(i, "language") for i in alert.findall(f"{{{CAP_NS}}}info")]
        assert languages == ["zh-CN", "en-US"]
        chinese = info_in(alert, "zh-CN")
        assert cap(chinese, "headline") == "一键报警：No. 1 School"
        assert cap(chinese, "instruction") == PANIC_SOP_ZH
        assert cap(chinese, "description").startswith("一键报警：No. 1 School。\n设备 btn-real")
        assert parameters(chinese, "parameter")["gridwatch:revision"] == str(revision)
        info = info_in(alert, "en-US")
        assert cap(info, "category") == "Safety"
        assert cap(info, "event") == "panic"
        assert cap(info, "urgency") == "Immediate"
        assert cap(info, "severity") == "Extreme"
        assert cap(info, "certainty") == "Observed"
        assert cap(info, "headline") == "Panic alarm: No. 1 School"
        assert cap(info, "instruction") == PANIC_SOP
        assert cap(info, "area/circle") == f"{LATITUDE:.6f},{LONGITUDE:.6f} 0.05"
        assert parameters(info, "parameter")["gridwatch:revision"] == str(revision)
        assert parameters(info, "eventCode")["gridwatch:priority"] == "P1"
    states = [
        parameters(info_in(alerts[(real, r)], "en-US"), "parameter")["gridwatch:state"]
        for r in range(1, 6)
    ]
    assert states == ["new", "acknowledged", "dispatched", "resolved", "closed"]
    dispatched = info_in(alerts[(real, 3)], "en-US")
    assert dispatched is not None
    assert parameters(dispatched, "parameter")["gridwatch:department"] == "police-station-3"

    # A drill is an exercise from its first message to its cancellation as a false alarm.
    drill_open, drill_false = alerts[(drill, 1)], alerts[(drill, 2)]
    assert cap(drill_open, "status") == cap(drill_false, "status") == "Exercise"
    assert cap(drill_open, "msgType") == "Alert"
    assert cap(drill_false, "msgType") == "Cancel"
    false_info = info_in(drill_false, "en-US")
    assert false_info is not None
    assert cap(false_info, "certainty") == "Unlikely"
    assert cap(false_info, "responseType") == "None"
    assert cap(false_info, "headline") == "Panic alarm: No. 2 School"
