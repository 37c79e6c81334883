"""A picture of a buffered stream, decoded from the packets a ring holds.

A camera the hub already pulls (its pre-alarm buffer) gives its snapshot from
there: the newest key frame the ring holds is decoded, one picture, no second
session to the camera (whose RTSP server may allow only a few, and which an
alarm storm would otherwise open by the dozen). The picture is at most one group
of pictures older than the moment it is asked for; the evidence clip holds every
picture around the alarm.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import av

from adapters.media.ring import MediaPacket, StreamHeader

__all__ = ["key_picture"]


def key_picture(header: StreamHeader, packets: Sequence[MediaPacket]) -> Any | None:
    """The picture of the first video key frame in `packets`, as an `av.VideoFrame`;
    None when there is none or it does not decode (blocking: run it in a worker thread)."""
    key = next((p for p in packets if p.video and p.keyframe), None)
    if key is None:
        return None
    template = av.open(io.BytesIO(header.template), format=header.template_format)
    try:
        if key.track >= len(template.streams) or template.streams[key.track].type != "video":
            return None
        decoder: Any = template.streams[key.track].codec_context
        extradata = header.extradata[key.track] if key.track < len(header.extradata) else None
        if extradata:
            decoder.extradata = extradata
        packet = av.Packet(key.data)
        packet.pts = key.pts
        packet.dts = key.dts
        packet.time_base = key.time_base
        try:
            # The key frame, then a flush: a decoder that holds pictures back for
            # reordering hands this one out.
            frames = [*decoder.decode(packet), *decoder.decode(None)]
        except av.FFmpegError:
            return None  # a damaged key frame
        whole = [frame for frame in frames if not frame.is_corrupt]
        return whole[0] if whole else None
    finally:
        template.close()
