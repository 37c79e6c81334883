"""The PullPoint event channel against a scripted SOAP camera on 127.0.0.1.

The camera expires subscriptions, answers with faults, stops answering, and
runs its clock an hour behind; the channel must keep delivering events,
re-subscribe with backoff, and say in its health what happened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.onvif.client import (
    EventChannelManager,
    EventChannelSettings,
    EventSubscription,
)
from camera_registry.events import DeviceEvent
from tests.integration.onvif_fake_camera import (
    FakeCamera,
    digest_ok,
    fake_camera,
    fault,
    operation,
    respond,
    soap,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onvif"
CAMERA_SKEW = timedelta(hours=-1)  # the camera's clock is an hour behind
FAST = EventChannelSettings(
    subscription_lifetime=timedelta(seconds=60),
    renew_before=timedelta(seconds=10),
    pull_timeout=timedelta(seconds=1),
    call_timeout=1.0,
    backoff_initial=0.05,
    backoff_max=0.2,
)


def _xs(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class EventCamera:
    """A scripted camera with an event service; PullMessages answers come from `script`."""

    def __init__(self, lifetime: timedelta = timedelta(seconds=60)) -> None:
        self.username, self.password = "operator", "s3cret-pw"
        self.lifetime = lifetime
        self.script: list[str | bytes] = []
        self.subscriptions = 0
        self.renewals = 0
        self.unsubscribes = 0
        self.renew_fault = False
        self.rejected_signatures = 0
        self.creates_in_flight = 0
        self.max_creates_in_flight = 0
        self.create_delay = 0.0
        self.idle_pull_delay = 0.05
        self.termination = self.clock()

    def clock(self) -> datetime:
        return datetime.now(UTC) + CAMERA_SKEW

    def _created_fresh(self, body: bytes) -> bool:
        found = re.search(rb"<wsu:Created>([^<]+)</wsu:Created>", body)
        if not found:
            return False
        created = datetime.fromisoformat(found.group(1).decode().replace("Z", "+00:00"))
        return abs(created - self.clock()) < timedelta(seconds=10)

    async def __call__(self, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        name = operation(body)
        now = self.clock()
        if name == "GetSystemDateAndTime":
            await respond(writer, date_answer(now))
            return
        if not (digest_ok(body, self.username, self.password) and self._created_fresh(body)):
            self.rejected_signatures += 1
            await respond(writer, fault("ter:NotAuthorized", "Sender not authorized"), "400 Bad")
            return
        if name == "GetCapabilities":
            await respond(
                writer,
                soap(
                    "<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Events>"
                    "<tt:XAddr>http://192.168.1.64/onvif/event_service</tt:XAddr>"
                    "</tt:Events></tds:Capabilities></tds:GetCapabilitiesResponse>"
                ),
            )
        elif name == "CreatePullPointSubscription":
            self.creates_in_flight += 1
            self.max_creates_in_flight = max(self.max_creates_in_flight, self.creates_in_flight)
            try:
                await asyncio.sleep(self.create_delay)
            finally:
                self.creates_in_flight -= 1
            self.subscriptions += 1
            n = self.subscriptions
            self.termination = now + self.lifetime
            await respond(
                writer,
                soap(
                    "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
                    f"<wsa:Address>http://192.168.1.64/onvif/sub/{n}</wsa:Address>"
                    '<wsa:ReferenceParameters><x:Id xmlns:x="urn:acme">'
                    f"{n}</x:Id></wsa:ReferenceParameters>"
                    "</tev:SubscriptionReference>"
                    f"<wsnt:CurrentTime>{_xs(now)}</wsnt:CurrentTime>"
                    f"<wsnt:TerminationTime>{_xs(now + self.lifetime)}</wsnt:TerminationTime>"
                    "</tev:CreatePullPointSubscriptionResponse>"
                ),
            )
        elif name == "PullMessages":
            await self._pull(path, body, writer, now)
        elif name == "Renew":
            self.renewals += 1
            if self.renew_fault:
                await respond(writer, fault("wsrf-rw:ResourceUnknownFault", "gone"), "500 Err")
                return
            self.termination = now + self.lifetime
            await respond(
                writer,
                soap(
                    f"<wsnt:RenewResponse><wsnt:TerminationTime>{_xs(now + self.lifetime)}"
                    f"</wsnt:TerminationTime><wsnt:CurrentTime>{_xs(now)}</wsnt:CurrentTime>"
                    "</wsnt:RenewResponse>"
                ),
            )
        elif name == "Unsubscribe":
            self.unsubscribes += 1
            await respond(writer, soap("<wsnt:UnsubscribeResponse/>"))
        else:
            await respond(writer, fault("ter:ActionNotSupported", name), "500 Err")

    async def _pull(
        self, path: str, body: bytes, writer: asyncio.StreamWriter, now: datetime
    ) -> None:
        # The subscription's reference parameter must come back in the header.
        expected = path.rsplit("/", 1)[-1]
        if not re.search(rf"<x:Id\b[^>]*>{expected}</x:Id>".encode(), body):
            await respond(writer, fault("wsa:InvalidAddressingHeader", "no Id"), "500 Err")
            return
        step = self.script.pop(0) if self.script else None
        if step == "expire":
            await respond(writer, fault("wsrf-rw:ResourceUnknownFault", "expired"), "500 Err")
        elif step == "hang":
            await asyncio.sleep(3600)
        elif isinstance(step, bytes):
            await respond(writer, step)
        else:
            await asyncio.sleep(self.idle_pull_delay)
            await respond(
                writer,
                soap(
                    f"<tev:PullMessagesResponse><tev:CurrentTime>{_xs(now)}</tev:CurrentTime>"
                    f"<tev:TerminationTime>{_xs(self.termination)}</tev:TerminationTime>"
                    "</tev:PullMessagesResponse>"
                ),
            )


def date_answer(now: datetime) -> bytes:
    return soap(
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
        "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
        f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}"
        f"</tt:Minute><tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}"
        f"</tt:Year><tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date>"
        "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
    )


class Collector:
    def __init__(self) -> None:
        self.events: list[DeviceEvent] = []

    async def __call__(self, event: DeviceEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def wait_for(condition: Callable[[], bool], within: float = 8.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def channel(
    camera: EventCamera, collector: Collector, settings: EventChannelSettings = FAST
) -> AsyncIterator[tuple[FakeCamera, EventSubscription]]:
    async with fake_camera(camera) as server:
        subscription = EventSubscription(
            "cam-1",
            server.host,
            server.port,
            camera.username,
            camera.password,
            collector,
            settings=settings,
        )
        async with subscription:
            yield server, subscription


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def test_events_arrive_and_health_is_reported() -> None:
    camera, collector = EventCamera(), Collector()
    camera.script = [
        fixture("motion_on.xml"),
        fixture("unknown_topic.xml"),
        fixture("motion_off.xml"),
    ]
    async with channel(camera, collector) as (server, subscription):
        await wait_for(lambda: len(collector.events) == 3)
        health = subscription.health()
    assert collector.kinds() == ["onvif.motion"] * 3
    # Cell motion on, a second source's motion alarm on (beside an unknown topic), cell motion off.
    assert [e.payload["state"] for e in collector.events] == [True, True, False]
    assert health.state == "subscribed" and health.subscribed_since is not None
    assert health.last_successful_pull is not None and health.pulls >= 3
    assert health.messages_per_topic["RuleEngine/CellMotionDetector/Motion"] == 2
    assert health.unknown_topics == {"Acme/PeopleCounter/Count": 1}
    assert health.clock_offset is not None
    assert abs(health.clock_offset - CAMERA_SKEW) < timedelta(seconds=3)
    # Every signed request carried a digest the camera accepted, on the camera's clock.
    assert camera.rejected_signatures == 0
    # The advertised 192.168.1.64 addresses were pinned to the configured camera.
    assert any(path == "/onvif/event_service" for path, _ in server.requests)
    assert any(path == "/onvif/sub/1" for path, _ in server.requests)
    assert camera.unsubscribes == 1  # leaving the context unsubscribes


async def test_an_expired_subscription_is_replaced() -> None:
    camera, collector = EventCamera(), Collector()
    camera.script = ["expire", fixture("tamper.xml")]
    async with channel(camera, collector) as (_, subscription):
        await wait_for(lambda: "onvif.tamper" in collector.kinds())
        health = subscription.health()
    assert collector.kinds() == ["onvif.channel_lost", "onvif.channel_restored", "onvif.tamper"]
    assert "expired" in str(collector.events[0].payload["reason"])
    assert camera.subscriptions == 2 and health.resubscriptions == 1
    assert health.consecutive_failures == 0 and health.last_error is not None


async def test_renewal_before_expiry_and_a_failed_renewal() -> None:
    camera, collector = EventCamera(lifetime=timedelta(seconds=3)), Collector()
    settings = EventChannelSettings(
        subscription_lifetime=timedelta(seconds=3),
        renew_before=timedelta(seconds=2),
        pull_timeout=timedelta(milliseconds=200),
        call_timeout=1.0,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    async with channel(camera, collector, settings) as (_, subscription):
        # The camera counts a renewal when it answers; the client when it has read the answer.
        await wait_for(lambda: subscription.health().renewals >= 2)
        assert camera.renewals >= 2
        assert camera.subscriptions == 1
        camera.renew_fault = True
        await wait_for(lambda: subscription.health().renew_failures >= 1)
        camera.renew_fault = False
        await wait_for(lambda: camera.subscriptions >= 2 and subscription.health().pulls > 0)
        health = subscription.health()
    assert "renew failed" in (health.last_error or "")
    assert "onvif.channel_lost" in collector.kinds()


async def test_a_camera_that_stops_answering_is_noticed_and_recovered() -> None:
    camera, collector = EventCamera(), Collector()
    camera.script = ["hang"]
    async with channel(camera, collector) as (_, subscription):
        await wait_for(lambda: subscription.health().last_error is not None, within=6)
        health = subscription.health()
        assert health.consecutive_failures >= 1
        assert "timeout" in (health.last_error or "")
        await wait_for(lambda: "onvif.channel_restored" in collector.kinds())
    assert collector.kinds()[:2] == ["onvif.channel_lost", "onvif.channel_restored"]


async def test_a_wrong_password_keeps_failing_with_backoff() -> None:
    camera, collector = EventCamera(), Collector()
    async with fake_camera(camera) as server:
        subscription = EventSubscription(
            "cam-1", server.host, server.port, "operator", "wrong", collector, settings=FAST
        )
        async with subscription:
            await wait_for(lambda: subscription.health().consecutive_failures >= 3)
            health = subscription.health()
    assert health.last_error is not None and health.last_error.startswith("auth")
    assert collector.kinds() == ["onvif.channel_lost"]  # reported once, not per retry
    assert camera.subscriptions == 0


async def test_many_cameras_share_one_pool_with_bounded_setup() -> None:
    camera, collector = EventCamera(), Collector()
    camera.create_delay = 0.05
    camera.idle_pull_delay = 0.2
    stalled = EventCamera()
    stalled.script = ["hang"] * 50
    async with (
        fake_camera(camera) as good,
        fake_camera(stalled) as bad,
        EventChannelManager(collector, settings=FAST, max_concurrent_setups=4) as manager,
    ):
        for n in range(40):
            manager.add(f"cam-{n}", good.host, good.port, camera.username, camera.password)
        manager.add("stalled", bad.host, bad.port, stalled.username, stalled.password)
        await wait_for(
            lambda: all(h.pulls > 0 for d, h in manager.health().items() if d != "stalled"),
            within=15,
        )
        assert len(manager) == 41
        assert manager.health()["stalled"].pulls == 0
        await manager.remove("cam-0")
        assert "cam-0" not in manager.health()
    assert (
        camera.subscriptions >= 40
    )  # one each (a slow answer on a loaded machine may cost a re-subscribe)
    assert camera.max_creates_in_flight <= 4


@pytest.mark.parametrize("bad", ["renew_before", "pull_timeout"])
def test_settings_refuse_timings_that_cannot_work(bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        if bad == "renew_before":
            EventChannelSettings(
                subscription_lifetime=timedelta(seconds=10), renew_before=timedelta(seconds=10)
            )
        else:
            EventChannelSettings(
                subscription_lifetime=timedelta(seconds=10),
                renew_before=timedelta(seconds=5),
                pull_timeout=timedelta(seconds=5),
            )
