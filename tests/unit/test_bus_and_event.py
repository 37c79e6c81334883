"""The event value type refuses bad values; the bus fans out and cuts off laggards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from camera_registry.events import DeviceEvent
from hub.bus import EventBus, SubscriptionOverflow
from tests.helpers import make_event


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time": datetime(2026, 1, 1)},  # naive  # noqa: DTZ001
        {"time": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8)))},
        {"device_id": "cam 1"},
        {"device_id": "x" * 65},
        {"kind": "Motion!"},
        {"dedup_key": ""},
        {"source": ""},
    ],
)
def test_device_event_refuses_bad_values(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "time": datetime(2026, 1, 1, tzinfo=UTC),
        "device_id": "cam-1",
        "kind": "onvif.motion",
    }
    base.update(kwargs)
    with pytest.raises(ValueError):
        DeviceEvent(**base)  # type: ignore[arg-type]


def test_device_event_payload_is_read_only() -> None:
    event = make_event(1, payload={"a": 1})
    with pytest.raises(TypeError):
        event.payload["a"] = 2  # type: ignore[index]


async def test_every_subscriber_gets_every_message_in_order() -> None:
    bus: EventBus[int] = EventBus("n")
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish_all([1, 2, 3])
    assert [await a.get() for _ in range(3)] == [1, 2, 3]
    assert [await b.get() for _ in range(3)] == [1, 2, 3]


async def test_a_slow_subscriber_is_cut_off_without_blocking_others() -> None:
    bus: EventBus[int] = EventBus("n")
    slow = bus.subscribe(maxsize=2, name="slow")
    fast = bus.subscribe(maxsize=100, name="fast")
    bus.publish_all(range(10))
    assert bus.subscriber_count == 1
    with pytest.raises(SubscriptionOverflow):
        await slow.get()
    assert [await fast.get() for _ in range(10)] == list(range(10))


async def test_closing_delivers_what_was_queued_then_ends() -> None:
    bus: EventBus[int] = EventBus("n")
    sub = bus.subscribe()
    bus.publish(1)
    sub.close()
    assert [m async for m in sub] == [1]  # what was queued, then the end
