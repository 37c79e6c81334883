"""What the pre-alarm buffer needs of a packet source (the contract every source keeps).

A source is one camera's stream, pulled once, handed packet by packet to its
taps. `PacketPull` (RTSP and anything else PyAV opens by URL) is one; a
GB/T 28181 channel's MPEG-PS demux is another. A source:

* calls every tap with `(None, header)` when it (re)connects, before that
  connection's first packet — the `StreamHeader` describes the tracks (a small
  NUT template with each track's parameters, the raw extradata, kinds, codecs);
* then calls every tap with `(packet, None)` for each `MediaPacket`, in arrival
  order: the track index into the header's tracks, pts/dts/duration in the
  track's `time_base`, `keyframe`, the packet's bytes as received (H.264/H.265
  in the header's bitstream form, no decoding), `received` (epoch seconds when
  the hub got it) and `video`; timestamps already continuous per track
  (`Timeline` makes them so);
* calls taps on its own thread: a tap is quick and never blocks;
* gives a tap added while connected the current header at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from adapters.media.ring import MediaPacket, StreamHeader

__all__ = ["PacketSource", "PacketTap"]

#: Receives each packet (None marks a new connection, with its header). Runs on the
#: source's thread: it must be quick and must not block.
PacketTap = Callable[[MediaPacket | None, StreamHeader | None], None]


class PacketSource(Protocol):
    """One camera's stream feeding the pre-alarm buffer (and live viewers)."""

    @property
    def connected(self) -> bool:
        """True while packets flow from the camera."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the last connection ended or failed (a short reason, no secrets)."""
        ...

    @property
    def header(self) -> StreamHeader | None:
        """The current connection's tracks, once known."""
        ...

    def add_tap(self, tap: PacketTap) -> None:
        """Give every further packet to `tap` too (the header at once, if known)."""

    def remove_tap(self, tap: PacketTap) -> None:
        """Stop giving packets to `tap`."""

    def start(self) -> None:
        """Start pulling (returns at once; the source runs on its own thread)."""

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop pulling; blocks up to `timeout_s` (callers run it in a thread)."""
