"""Shared subscriptions: the filters a cluster node subscribes to and how copies are told apart."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.mqtt.models import MqttSettings, VendorMapping
from adapters.mqtt.sharing import (
    OBSERVER_SUBSCRIPTION_ID,
    SHARED_SUBSCRIPTION_ID,
    is_observer_copy,
    node_client_id,
    observer_filters,
    shared_filters,
)


def test_every_filter_is_shared_in_the_group_and_acks_are_also_observed() -> None:
    vendor = VendorMapping(
        name="acme",
        topic="acme/+/{device_id}/sos",
        event_type_pointer="/e",
        kinds={"1": "panic.press"},
    )
    shared = shared_filters("hubs", "gridwatch/v1", (vendor,))
    assert shared == [
        "$share/hubs/gridwatch/v1/+/event",
        "$share/hubs/gridwatch/v1/+/heartbeat",
        "$share/hubs/gridwatch/v1/+/availability",
        "$share/hubs/gridwatch/v1/+/cmd/ack",
        "$share/hubs/acme/+/+/sos",
    ]
    assert observer_filters("gridwatch/v1") == ["gridwatch/v1/+/cmd/ack"]


def test_a_copy_is_an_observer_copy_only_without_the_shared_identifier() -> None:
    assert is_observer_copy([OBSERVER_SUBSCRIPTION_ID])
    assert not is_observer_copy([SHARED_SUBSCRIPTION_ID])
    assert not is_observer_copy([SHARED_SUBSCRIPTION_ID, OBSERVER_SUBSCRIPTION_ID])
    assert not is_observer_copy([])  # no identifiers: an unshared hub's own subscription


def test_each_node_has_its_own_session_and_sharing_needs_mqtt_5() -> None:
    assert node_client_id("gridwatch-hub", "node-2") == "gridwatch-hub-node-2"
    with pytest.raises(ValidationError, match="shared_group needs protocol 5"):
        MqttSettings(shared_group="hubs", protocol="3.1.1")
    with pytest.raises(ValidationError):
        MqttSettings(shared_group="$share/x")
