"""Pure rules of the GB/T 28181 platform: which catalog changes reach registry devices, and
when a subscription is renewed and for how long a device granted it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.gb28181.manscdp import CatalogItem
from adapters.gb28181.sip import SipResponse
from hub.gb28181 import storage as repo
from hub.gb28181.catalog import _device_changes, _reported
from hub.gb28181.subscriptions import _granted, _Subscription

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
CHANNEL = "15020700001320000001"


def _before(item: CatalogItem) -> repo.ChannelRow:
    return repo.ChannelRow(
        device_id="15020700001180000001",
        channel_id=CHANNEL,
        parent_id=None,
        name=item.name,
        status="ON",
        ptz_type=None,
        civil_code="150207",
        registered=True,
        info=_reported(item),
        updated_at=NOW,
    )


def test_a_first_report_changes_nothing_a_maintainer_set() -> None:
    item = CatalogItem(CHANNEL, name="通道1", latitude=40.6, longitude=109.8)
    assert _device_changes(None, item) == {}


def test_what_the_device_changed_is_applied_and_nothing_else() -> None:
    before = _before(
        CatalogItem(CHANNEL, name="通道1", address="路口", latitude=40.6, longitude=109.8)
    )
    renamed = CatalogItem(CHANNEL, name="学校门口", address="路口", latitude=40.6, longitude=109.8)
    assert _device_changes(before, renamed) == {"name": "学校门口"}
    moved = CatalogItem(CHANNEL, name="通道1", address="路口", latitude=40.61, longitude=109.8)
    assert _device_changes(before, moved) == {"latitude": 40.61, "longitude": 109.8}
    assert _device_changes(before, CatalogItem(CHANNEL, name="通道1", address="路口")) == {}


def test_implausible_positions_and_control_characters_never_reach_the_registry() -> None:
    before = _before(CatalogItem(CHANNEL, name="通道1", latitude=40.6, longitude=109.8))
    for latitude, longitude in ((999.0, 109.8), (0.0, 0.0), (40.6, -500.0)):
        item = CatalogItem(CHANNEL, name="通道1", latitude=latitude, longitude=longitude)
        assert _device_changes(before, item) == {}
    dirty = CatalogItem(CHANNEL, name="通道\x002\x07", latitude=40.6, longitude=109.8)
    assert _device_changes(before, dirty) == {"name": "通道 2"}


def _ok(expires: str | None) -> SipResponse:
    headers = [("Expires", expires)] if expires is not None else []
    return SipResponse(headers=headers, body=b"", status=200, reason="OK")


def test_the_lifetime_is_what_the_device_granted_never_more_than_asked() -> None:
    assert _granted(_ok("600"), 3600) == 600
    assert _granted(_ok(None), 3600) == 3600
    assert _granted(_ok("7200"), 3600) == 3600
    assert _granted(_ok("soon"), 3600) == 3600
    assert _granted(_ok("0"), 3600) == 3600


def test_renewal_falls_due_a_third_of_the_lifetime_before_the_end_at_most_two_minutes() -> None:
    short = _Subscription("d", "Catalog", NOW + timedelta(seconds=6), 6, None)
    assert not short.due(NOW + timedelta(seconds=3.9))
    assert short.due(NOW + timedelta(seconds=4))
    long = _Subscription("d", "presence", NOW + timedelta(seconds=3600), 3600, None)
    assert not long.due(NOW + timedelta(seconds=3479))
    assert long.due(NOW + timedelta(seconds=3480))
    failed = _Subscription("d", "presence", NOW + timedelta(seconds=3600), 3600, None)
    failed.retry_at = NOW + timedelta(seconds=5)
    assert not failed.due(NOW) and failed.due(NOW + timedelta(seconds=5))
