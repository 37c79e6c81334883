"""GB/T 28181 live video: INVITE a channel of the simulator, which streams MPEG-PS over RTP
made by GStreamer (x264enc ! mpegpsmux); the hub demuxes and decodes it with PyAV. One
INVITE per channel shared by its users, BYE after the last; hostile RTP is dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.gb28181.ps_stream import gst_available, start_gst_stream
from adapters.gb28181.simulator import SimChannel
from tests.integration.test_gb28181_hub import NVR, eventually, running_hub, simulator
from tests.peers import peer_missing

CHANNEL = "15020700001320000001"


@pytest.fixture(autouse=True)
def _gstreamer() -> None:
    if not gst_available():
        peer_missing("gstreamer", "gst-launch-1.0 is not installed")


async def test_invite_streams_ps_over_rtp_that_decodes_and_bye_after_the_last_user(
    tmp_path: Path,
) -> None:
    async with (
        running_hub(tmp_path, None, auto_register=True, media_ports=[31000, 31100]) as (hub, _),
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
        assert 31000 <= first.port <= 31100
        await asyncio.wait_for(first.first_frame.wait(), 60)
        assert first.codec == "h264"
        queue = first.subscribe()
        frame = await asyncio.wait_for(queue.get(), 30)
        assert (frame.width, frame.height) == (320, 240)

        # Hostile packets at the receive port: garbage and a foreign SSRC change nothing.
        loop = asyncio.get_running_loop()
        attacker, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", first.port)
        )
        for _ in range(50):
            attacker.sendto(b"\x80\x60" + b"\x00" * 10 + b"junk" * 300)  # another SSRC
            attacker.sendto(b"not rtp at all")
        attacker.close()
        counters = first.reassembler.counters
        await eventually(lambda: _async(counters.wrong_ssrc >= 50), "foreign packets dropped")
        decoded = first.frames
        await eventually(lambda: _async(first.frames > decoded + 5), "still decoding")

        await media.release(first)
        assert device.stats.byes == 0
        await media.release(second)
        assert device.stats.byes == 1
        assert media.session(CHANNEL) is None


async def _async(value: bool) -> bool:
    return value


async def test_a_gb28181_channel_plays_in_the_live_view_and_its_last_viewer_ends_the_invite(
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
        vp8 = await watch(client, CHANNEL, vp8_only=True)
        try:
            assert h264.status == 200, h264.body
            assert vp8.status == 200, vp8.body
            for viewer in (h264, vp8):
                picture = await viewer.frame()
                assert (picture.width, picture.height) == (320, 240)
            assert device.stats.invites == 1  # two pulls, one INVITE
        finally:
            await h264.pc.close()
            await vp8.pc.close()
        await eventually(lambda: _async(device.stats.byes == 1), "BYE after the last viewer")
        assert hub.gb28181.media.session(CHANNEL) is None
