"""GB/T 28181 live video: INVITE a channel of the simulator, which streams MPEG-PS over RTP
made by GStreamer (x264enc ! mpegpsmux), over UDP or over TCP (the device connects to the
hub's port, RFC 4571 framing); the hub demuxes it with PyAV. One INVITE per channel shared
by its users, BYE after the last; hostile RTP is dropped on either transport; H.264 goes
to a viewer that takes it without being decoded or re-encoded."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from adapters.gb28181.ps_stream import gst_available, start_gst_stream
from adapters.gb28181.rtp import RtpPacket, frame_rtp
from adapters.gb28181.sdp import MediaAnswer
from adapters.gb28181.simulator import SimChannel
from tests.integration.test_gb28181_hub import NVR, eventually, running_hub, simulator
from tests.peers import peer_missing

CHANNEL = "15020700001320000001"


@pytest.fixture(autouse=True)
def _gstreamer() -> None:
    if not gst_available():
        peer_missing("gstreamer", "gst-launch-1.0 is not installed")


def _hostile(ssrc: int) -> list[bytes]:
    """Garbage, packets of another SSRC, and a frame far larger than the reassembly cap."""
    foreign = RtpPacket(96, 1, 1, ssrc ^ 0xFFFF, True, b"\x00\x00\x01\xba" + b"junk" * 300)
    return [b"not rtp at all", bytes(foreign)] * 50


async def _attack(port: int, transport: str, ssrc: int) -> None:
    packets = _hostile(ssrc)
    if transport == "UDP":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packet in packets:
                sock.sendto(packet, ("127.0.0.1", port))
        return
    # A second TCP connection to the receive port, framed like the device's.
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(frame_rtp(packet) for packet in packets))
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_invite_streams_ps_over_rtp_that_decodes_and_bye_after_the_last_user(
    tmp_path: Path, transport: str
) -> None:
    async with (
        running_hub(
            tmp_path,
            None,
            auto_register=True,
            media_ports=[31000, 31100],
            media_transport=transport,
        ) as (hub, _),
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "通道1")],
            media=start_gst_stream,
        ) as device,
    ):
        assert await device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "channel registered")
        media = hub.gb28181.media
        first = await media.acquire(CHANNEL)
        second = await media.acquire(CHANNEL)
        assert first is second and device.stats.invites == 1
        assert first.tcp is (transport == "TCP")
        assert 31000 <= first.port <= 31100
        queue = first.subscribe()
        frame = await asyncio.wait_for(queue.get(), 30)
        assert first.codec == "h264"
        assert (frame.width, frame.height) == (320, 240)

        # Hostile packets at the receive port: garbage and a foreign SSRC change nothing.
        counters = first.reassembler.counters
        await _attack(first.port, transport, int(first.ssrc))
        await eventually(lambda: _async(counters.wrong_ssrc >= 50), "foreign packets dropped")
        await eventually(lambda: _async(counters.not_rtp >= 50), "garbage dropped")
        assert first.reassembler.buffered < 64 * 1024
        decoded = first.frames
        await eventually(lambda: _async(first.frames > decoded + 5), "still decoding")
        first.unsubscribe(queue)

        await media.release(first)
        assert device.stats.byes == 0
        await media.release(second)
        assert device.stats.byes == 1
        assert media.session(CHANNEL) is None


async def _async(value: bool) -> bool:
    return value


async def test_live_view_passes_gb28181_h264_through_and_its_last_viewer_ends_the_invite(
    tmp_path: Path,
) -> None:
    from tests.integration.test_live_view_limits import watch

    async with (
        running_hub(
            tmp_path,
            None,
            auto_register=True,
            media_ports=[31200, 31300],
            live_idle_close=0.5,
        ) as (hub, client),
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "通道1")],
            media=start_gst_stream,
        ) as device,
    ):
        assert await device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "channel registered")
        h264 = await watch(client, CHANNEL)
        vp8 = None
        try:
            assert h264.status == 200, h264.body
            assert h264.body["passthrough"] is True
            for _ in range(10):
                picture = await h264.frame()
            assert (picture.width, picture.height) == (320, 240)
            # The browser decodes H.264 the hub never decoded: no picture was decoded,
            # so no encoder had anything to encode; the track hands on packets.
            player = hub.live.relay.player(CHANNEL, True)
            session = hub.gb28181.media.session(CHANNEL)
            assert player is not None and session is not None
            assert player.passthrough and player.packets_passed >= 10
            assert player.frames_passed == 0 and session.feed.frames_decoded == 0

            # A viewer without H.264 gets pictures the hub decodes (and aiortc encodes).
            vp8 = await watch(client, CHANNEL, vp8_only=True)
            assert vp8.status == 200, vp8.body
            assert vp8.body["passthrough"] is False
            picture = await vp8.frame()
            assert (picture.width, picture.height) == (320, 240)
            assert session.feed.frames_decoded > 0
            assert device.stats.invites == 1  # two pulls, one INVITE
        finally:
            await h264.pc.close()
            if vp8 is not None:
                await vp8.pc.close()
        await eventually(lambda: _async(device.stats.byes == 1), "BYE after the last viewer")
        assert hub.gb28181.media.session(CHANNEL) is None


async def test_an_h265_channel_is_decoded_for_a_viewer_that_takes_h264(tmp_path: Path) -> None:
    from tests.integration.test_live_view_limits import watch

    async with (
        running_hub(
            tmp_path, None, auto_register=True, media_ports=[31200, 31300], live_idle_close=0.5
        ) as (hub, client),
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "通道1")],
            media=functools.partial(start_gst_stream, codec="h265"),
        ) as device,
    ):
        assert await device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "channel registered")
        viewer = await watch(client, CHANNEL)
        try:
            assert viewer.status == 200, viewer.body
            picture = await viewer.frame()
            assert (picture.width, picture.height) == (320, 240)
            # Browsers take no H.265 over WebRTC: the hub decodes it and aiortc encodes H.264.
            player = hub.live.relay.player(CHANNEL, True)
            session = hub.gb28181.media.session(CHANNEL)
            assert player is not None and session is not None
            assert session.codec == "hevc" and not player.passthrough
            assert player.frames_passed >= 1 and session.feed.frames_decoded >= 1
        finally:
            await viewer.pc.close()
        await eventually(lambda: _async(device.stats.byes == 1), "BYE after the last viewer")


async def test_a_device_slow_to_answer_its_invite_holds_up_only_its_own_channel(
    tmp_path: Path,
) -> None:
    slow_channel = "15020700001320000002"
    answer = asyncio.Event()

    async def slow_stream(offer: MediaAnswer, ssrc: int) -> Callable[[], Awaitable[None]]:
        await answer.wait()  # the device answers the INVITE only when told
        return await start_gst_stream(offer, ssrc)

    async with (
        running_hub(tmp_path, None, auto_register=True, media_ports=[31400, 31500]) as (hub, _),
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "通道1")],
            media=start_gst_stream,
        ) as device,
        simulator(
            hub,
            "15020700001180000002",
            "platform-default",
            channels=[SimChannel(slow_channel, "通道2")],
            media=slow_stream,
        ) as slow_device,
    ):
        assert await device.register() == 200
        assert await slow_device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "registered")
        await eventually(lambda: hub.registry.get(slow_channel, scope=None), "registered")
        media = hub.gb28181.media
        slow = asyncio.create_task(media.acquire(slow_channel))
        also_slow = asyncio.create_task(media.acquire(slow_channel))
        await eventually(lambda: _async(slow_device.stats.invites >= 1), "INVITE sent")
        # The other device's channel starts while the first INVITE is unanswered.
        session = await media.acquire(CHANNEL)
        assert not slow.done() and not also_slow.done()
        answer.set()
        first, second = await asyncio.gather(slow, also_slow)
        assert first is second and first.users == 2  # one INVITE for both users
        for user in (session, first, second):
            await media.release(user)
