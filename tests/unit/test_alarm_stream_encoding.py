"""The console stream encodes each change once; every console gets the same text."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hub.alarms.routes import _ENCODED, _EncodedChanges
from hub.alarms.schemas import ChangeOut
from hub.alarms.storage import AlarmChange
from hub.bus import EventBus


def _change(seq: int, device: str) -> AlarmChange:
    return AlarmChange(
        seq=seq,
        alarm_id=uuid.uuid5(uuid.NAMESPACE_URL, device),
        revision=1,
        action="open",
        at=datetime(2026, 12, 6, 8, 0, tzinfo=UTC),
        jurisdiction_path="/150207/",
        category="security",
        payload={"alarm": {"device_id": device, "title": "一键报警 学校东门"}},
    )


def test_the_text_is_the_message_send_json_would_send() -> None:
    change = _change(7, "btn-7")
    text = _EncodedChanges().text(change)
    expected = {"type": "change", **ChangeOut.of(change).model_dump(mode="json")}
    assert json.loads(text) == expected
    assert "一键报警" in text  # not \u-escaped, as Starlette's send_json writes it


def test_the_newest_changes_are_kept_and_each_hub_has_its_own() -> None:
    encoded = _EncodedChanges(size=2)
    first = encoded.text(_change(1, "btn-1"))
    assert encoded.text(_change(1, "other")) is first  # one change per seq
    encoded.text(_change(2, "btn-2"))
    encoded.text(_change(3, "btn-3"))
    assert "other" in encoded.text(_change(1, "other"))  # seq 1 fell out
    # Two hubs in one process number their changes from 1 each: separate caches.
    bus_a: EventBus[AlarmChange] = EventBus("a")
    bus_b: EventBus[AlarmChange] = EventBus("b")
    text_a = _ENCODED.setdefault(bus_a, _EncodedChanges()).text(_change(1, "btn-a"))
    text_b = _ENCODED.setdefault(bus_b, _EncodedChanges()).text(_change(1, "btn-b"))
    assert "btn-a" in text_a and "btn-b" in text_b
