"""Media packets without decoding: one pull per camera, a pre-alarm ring, clips remuxed to MP4.

`ring` and `clip` are pure; `pull` (PyAV demux thread of a URL), `feed` (PyAV
demux thread of bytes the caller pushes, e.g. a GB/T 28181 channel's PS) and
`remux` (PyAV mux) do the I/O. Every source keeps the contract in `source`
(`PacketSource`): the same `MediaPacket`s and `StreamHeader` to its taps, so
they all feed the same ring.
"""

from adapters.media.clip import ClipCut, ClipCutter, Placed, cut_clip, press_position, rebased
from adapters.media.feed import FrameTap, StreamFeed
from adapters.media.picture import key_picture
from adapters.media.pull import PacketPull, stream_header
from adapters.media.remux import TRANSCODED_AUDIO, ClipFile, ClipWriter, write_mp4
from adapters.media.ring import MediaPacket, PacketRing, RingStats, StreamHeader, Timeline
from adapters.media.source import PacketSource, PacketTap

__all__ = [
    "TRANSCODED_AUDIO",
    "ClipCut",
    "ClipCutter",
    "ClipFile",
    "ClipWriter",
    "FrameTap",
    "MediaPacket",
    "PacketPull",
    "PacketRing",
    "PacketSource",
    "PacketTap",
    "Placed",
    "RingStats",
    "StreamFeed",
    "StreamHeader",
    "Timeline",
    "cut_clip",
    "key_picture",
    "press_position",
    "rebased",
    "stream_header",
    "write_mp4",
]
