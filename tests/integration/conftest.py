"""Fixtures shared by the integration tests: the machine's Mosquitto, and for the console's
browser tests Chromium and the RTSP camera peer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

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


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Debian's Chromium through Playwright; skips (or fails in CI) without it or Mosquitto."""
    from tests.integration.console_support import launch_browser, require_browser_peers

    require_browser_peers()
    async with launch_browser() as instance:
        yield instance


@pytest.fixture(scope="module")
def camera_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The GStreamer RTSP server peer for a module's tests (`camera_peer.url("ball")`)."""
    from tests.peers import peer_missing
    from tests.peers.rtsp import gstreamer_available, rtsp_peer

    reason = gstreamer_available()
    if reason:
        peer_missing("rtsp", reason)
    with rtsp_peer(tmp_path_factory.mktemp("rtsp")) as running:
        yield running
