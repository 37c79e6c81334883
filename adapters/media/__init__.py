"""Media packets without decoding: one pull per camera, a pre-alarm ring, clips remuxed to MP4.

`ring` and `clip` are pure; `pull` (PyAV demux thread) and `remux` (PyAV mux)
do the I/O. Any source that yields `MediaPacket`s and a `StreamHeader` (RTSP
today, a GB/T 28181 channel's PS demux tomorrow) feeds the same ring.
"""

from adapters.media.clip import ClipCut, cut_clip, press_position, rebased
from adapters.media.pull import PacketPull, PacketTap, stream_header
from adapters.media.remux import ClipFile, write_mp4
from adapters.media.ring import MediaPacket, PacketRing, RingStats, StreamHeader

__all__ = [
    "ClipCut",
    "ClipFile",
    "MediaPacket",
    "PacketPull",
    "PacketRing",
    "PacketTap",
    "RingStats",
    "StreamHeader",
    "cut_clip",
    "press_position",
    "rebased",
    "stream_header",
    "write_mp4",
]
