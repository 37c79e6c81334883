"""Media packets without decoding: one pull per camera, a pre-alarm ring, clips remuxed to MP4.

`ring` and `clip` are pure; `pull` (PyAV demux thread of a URL), `feed` (PyAV
demux thread of bytes the caller pushes, e.g. a GB/T 28181 channel's PS) and
`remux` (PyAV mux) do the I/O. Both sources hand the same `MediaPacket`s and
`StreamHeader` to their taps, so they feed the same ring.
"""

from adapters.media.clip import ClipCut, cut_clip, press_position, rebased
from adapters.media.feed import FrameTap, StreamFeed
from adapters.media.pull import PacketPull, PacketTap, stream_header
from adapters.media.remux import ClipFile, write_mp4
from adapters.media.ring import MediaPacket, PacketRing, RingStats, StreamHeader

__all__ = [
    "ClipCut",
    "ClipFile",
    "FrameTap",
    "MediaPacket",
    "PacketPull",
    "PacketRing",
    "PacketTap",
    "RingStats",
    "StreamFeed",
    "StreamHeader",
    "cut_clip",
    "press_position",
    "rebased",
    "stream_header",
    "write_mp4",
]
