"""Fixtures shared by the integration tests that talk to the machine's Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.hub_mqtt_support import unique_client_id
from tests.integration.mqtt_support import drop_session, machine_broker


@pytest.fixture
def broker() -> tuple[str, int]:
    """The machine's Mosquitto as (host, port); skips (or fails in CI) when it is not running."""
    return machine_broker()


@pytest.fixture
def client_id(broker: tuple[str, int]) -> Iterator[str]:
    """A hub MQTT client id of this test only; its persistent session is dropped afterwards."""
    name = unique_client_id()
    yield name
    drop_session(*broker, name)
